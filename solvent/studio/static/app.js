// The Solvent studio's entry: the caller's state and the router. Each page lives in pages/, UI helpers in
// ui.js, charts in charts.js; nothing imports this file back.
import { api, ApiError } from "./api.js";
import { accountPage } from "./pages/account.js";
import { createPage } from "./pages/create.js";
import { dashboardPage } from "./pages/dashboard.js";
import { historyPage } from "./pages/history.js";
import { imagePage } from "./pages/image.js";
import { signinPage } from "./pages/signin.js";
import { isOperator, loadMe, state } from "./state.js";
import { alertBox, setTitle } from "./ui.js";

const main = document.getElementById("main");

async function route() {
  const hash = location.hash || "#/create";
  const [path] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  const page = parts[0] || "create";
  if (state.me === null && page !== "signin") { location.hash = "#/signin"; return; }
  if (state.me && page === "signin") { location.hash = "#/create"; return; }
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === page || (page === "image" && a.dataset.nav === "history")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    if (page === "signin") await signinPage(main);
    else if (page === "create") await createPage(main);
    else if (page === "history") await historyPage(main);
    else if (page === "image") await imagePage(main, parts[1]);
    else if (page === "account") await accountPage(main);
    else if (page === "dashboard") {
      if (!isOperator()) {
        setTitle("Dashboard");
        main.innerHTML = `<h1>Dashboard</h1><div class="alert" role="alert"><strong>Not available</strong>
          The operator dashboard is for the server's operators. <a href="#/create">Back to creating</a>.</div>`;
      } else await dashboardPage(main);
    } else {
      main.innerHTML = `<h1>Not found</h1><p>There is no page here. <a href="#/create">Create an image</a>.</p>`;
    }
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) { state.me = null; location.hash = "#/signin"; return; }
    main.innerHTML = alertBox(err);
  }
  main.focus({ preventScroll: true });
}

document.getElementById("signout").addEventListener("click", async () => {
  try { await api("/api/auth/logout", { method: "POST" }); } catch { /* signed out either way */ }
  sessionStorage.clear();
  state.me = null;
  document.getElementById("top").hidden = true;
  location.hash = "#/signin";
});

window.addEventListener("hashchange", route);
loadMe().then(route).catch((err) => { main.innerHTML = alertBox(err); });
