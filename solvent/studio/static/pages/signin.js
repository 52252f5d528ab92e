// Sign in and sign up.
import { api } from "../api.js";
import { alertBox, setTitle } from "../ui.js";
import { loadMe, state } from "../state.js";

export async function signinPage(main) {
  setTitle("Sign in");
  if (!state.options) state.options = await api("/api/auth/options").catch(() => ({ signup: false, min_password: 10 }));
  const signup = state.options.signup;
  main.innerHTML = `
    <div class="auth">
      <section class="panel" aria-labelledby="signin-h">
        <h1 id="signin-h">Sign in to Solvent</h1>
        <form id="signin-form" novalidate>
          <label for="signin-email">Email</label>
          <input id="signin-email" type="email" autocomplete="username" required>
          <label for="signin-password">Password</label>
          <input id="signin-password" type="password" autocomplete="current-password" required>
          <div id="signin-error"></div>
          <div class="actions"><button type="submit" id="signin-submit">Sign in</button></div>
        </form>
        <p class="hint">The first administrator's email and password are printed by <code>solvent serve</code>.</p>
      </section>
      ${signup ? `
      <section class="panel" aria-labelledby="signup-h">
        <h2 id="signup-h">New here? Create an account</h2>
        <form id="signup-form" novalidate>
          <label for="signup-email">Email</label>
          <input id="signup-email" type="email" autocomplete="email" required>
          <label for="signup-name">Name <span class="hint">(optional)</span></label>
          <input id="signup-name" type="text" autocomplete="name">
          <label for="signup-password">Password <span class="hint">(at least ${state.options.min_password} characters)</span></label>
          <input id="signup-password" type="password" autocomplete="new-password" required>
          <div id="signup-error"></div>
          <div class="actions"><button type="submit" class="secondary">Create account</button></div>
        </form>
      </section>` : ""}
    </div>`;
  const go = async (ev, path, body, errId) => {
    ev.preventDefault();
    try {
      let out = await api(path, { method: "POST", body });
      // Sign-up answers the same whether or not the address has an account; logging in says which.
      if (path === "/api/auth/signup") out = await api("/api/auth/login", { method: "POST", body: { email: body.email, password: body.password } });
      sessionStorage.setItem("csrf", out.csrf_token);
      await loadMe();
      location.hash = "#/create";
    } catch (err) {
      document.getElementById(errId).innerHTML = alertBox(err);
    }
  };
  document.getElementById("signin-form").addEventListener("submit", (ev) => go(ev, "/api/auth/login", {
    email: document.getElementById("signin-email").value,
    password: document.getElementById("signin-password").value,
  }, "signin-error"));
  if (signup) document.getElementById("signup-form").addEventListener("submit", (ev) => go(ev, "/api/auth/signup", {
    email: document.getElementById("signup-email").value,
    name: document.getElementById("signup-name").value,
    password: document.getElementById("signup-password").value,
  }, "signup-error"));
  document.getElementById("signin-email").focus();
}
