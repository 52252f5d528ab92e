// The Solvent studio: sign-in, create, history, account and the operator dashboard, on the JSON API.
import { api, ApiError, credits, esc, explain, usd, when } from "./api.js";
import { createPage } from "./create.js";
import { dashboardPage } from "./dashboard.js";

const main = document.getElementById("main");
export const state = { me: null, options: null };

export function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 2500);
}

export function alertBox(err) {
  const e = explain(err);
  return `<div class="alert" role="alert"><strong>${esc(e.title)}</strong>${esc(e.message)}</div>`;
}

export function alertText(title, message) {
  return `<div class="alert" role="alert"><strong>${esc(title)}</strong>${esc(message)}</div>`;
}

export function setTitle(t) { document.title = `${t} · Solvent studio`; }

function isOperator() { return !!state.me && (state.me.scopes || []).includes("operator"); }
function isAdmin() { return !!state.me && (state.me.scopes || []).includes("admin"); }

async function loadMe() {
  try {
    state.me = await api("/api/me");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) state.me = null;
    else throw err;
  }
  const top = document.getElementById("top");
  top.hidden = !state.me;
  if (state.me) {
    const u = state.me.user || {};
    document.getElementById("who").textContent = `${u.email || "API key"} · ${state.me.org.name}`;
    document.getElementById("nav-dashboard").hidden = !isOperator();
  }
}

// ---------------------------------------------------------------------------------------------
// Sign-in and sign-up
// ---------------------------------------------------------------------------------------------

async function signinPage() {
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

// ---------------------------------------------------------------------------------------------
// History and image detail
// ---------------------------------------------------------------------------------------------

async function historyPage() {
  setTitle("History");
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const q = params.get("q") || "", model = params.get("model") || "";
  main.innerHTML = `
    <h1>History</h1>
    <form class="panel row" id="history-form" role="search">
      <div><label for="history-q">Search prompts</label><input id="history-q" type="search" value="${esc(q)}"></div>
      <div><label for="history-model">Model</label><select id="history-model"><option value="">All models</option></select></div>
      <div><button type="submit">Search</button></div>
    </form>
    <div id="history-error"></div>
    <div class="gallery" id="gallery" aria-live="polite"></div>
    <div class="actions"><button type="button" class="secondary" id="more" hidden>Show more</button></div>`;
  const gallery = document.getElementById("gallery");
  let cursor = null;
  const load = async () => {
    if (!document.body.contains(gallery)) return;
    const qs = new URLSearchParams({ limit: "24" });
    if (q) qs.set("q", q);
    if (model) qs.set("model", model);
    if (cursor) qs.set("cursor", cursor);
    try {
      const page = await api(`/api/images?${qs}`);
      if (!document.body.contains(gallery)) return;
      const sel = document.getElementById("history-model");
      if (sel.options.length === 1) for (const m of page.models) sel.add(new Option(m, m, false, m === model));
      for (const img of page.images) {
        const fig = document.createElement("figure");
        fig.innerHTML = `<a href="#/image/${esc(img.id)}" aria-label="Open image: ${esc(img.prompt || "(no prompt)")}">
          <img src="${esc(img.url)}" alt="${esc(img.prompt || "generated image")}" loading="lazy" width="${img.width}" height="${img.height}">
          <figcaption>${esc(img.prompt || "(no prompt)")}<br>${esc(img.model)} · seed ${img.seed}</figcaption></a>`;
        gallery.append(fig);
      }
      if (!gallery.children.length)
        gallery.outerHTML = `<p class="empty" id="gallery">${q || model ? "No images match this search." :
          'No images yet. <a href="#/create">Make your first one</a>.'}</p>`;
      cursor = page.next_cursor;
      document.getElementById("more").hidden = !cursor;
    } catch (err) {
      const box = document.getElementById("history-error");
      if (box) box.innerHTML = alertBox(err);
    }
  };
  document.getElementById("more").addEventListener("click", load);
  document.getElementById("history-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const qs = new URLSearchParams();
    const nq = document.getElementById("history-q").value.trim(), nm = document.getElementById("history-model").value;
    if (nq) qs.set("q", nq);
    if (nm) qs.set("model", nm);
    location.hash = `#/history${qs.toString() ? "?" + qs : ""}`;
  });
  await load();
}

const PARAM_LABELS = [
  ["prompt", "Prompt"], ["negative_prompt", "Negative prompt"], ["width", "Width"], ["height", "Height"],
  ["steps", "Steps"], ["cfg_scale", "CFG scale"], ["sampler", "Sampler"], ["seed", "Seed (job)"],
  ["batch_size", "Images"], ["strength", "Strength"], ["loras", "LoRAs"],
];

async function imagePage(id) {
  setTitle("Image");
  main.innerHTML = `<p class="loading">Loading…</p>`;
  let img;
  try {
    img = await api(`/api/images/${encodeURIComponent(id)}/info`);
  } catch (err) {
    main.innerHTML = `<h1>Image</h1>${alertBox(err)}<p><a href="#/history">Back to history</a></p>`;
    return;
  }
  const p = img.params || {};
  const rows = PARAM_LABELS.filter(([k]) => p[k] !== undefined && p[k] !== null && p[k] !== "" &&
    !(Array.isArray(p[k]) && !p[k].length))
    .map(([k, label]) => `<dt>${label}</dt><dd data-param="${k}">${esc(k === "loras" ?
      p[k].map((l) => `${l.name} × ${l.weight}`).join(", ") : p[k])}</dd>`).join("");
  main.innerHTML = `
    <h1>Image</h1>
    <div class="grid2">
      <div class="panel preview"><img id="detail-img" src="${esc(img.url)}" alt="${esc(img.prompt || "generated image")}"
        width="${img.width}" height="${img.height}"></div>
      <section class="panel" aria-labelledby="params-h">
        <h2 id="params-h">Parameters</h2>
        <dl class="params" id="params">
          <dt>Model</dt><dd data-param="model">${esc(img.model)}</dd>
          <dt>Mode</dt><dd data-param="mode">${esc(img.mode)}</dd>
          <dt>Seed</dt><dd data-param="image-seed">${img.seed}</dd>
          <dt>Size</dt><dd>${img.width}×${img.height}</dd>
          ${rows}
          <dt>Cost</dt><dd data-param="cost">${img.cost_mc == null ? "not charged" : credits(img.cost_mc) + " credits"}${
            img.batch_size > 1 && img.job_cost_mc != null ? ` (share of ${credits(img.job_cost_mc)} for ${img.batch_size} images)` : ""}</dd>
          <dt>Commercial use</dt><dd data-param="commercial">${img.commercial_use == null ? "unknown" :
            img.commercial_use ? "allowed by the plan it was made under" : "not allowed (made under a non-commercial plan)"}</dd>
          ${img.license ? `<dt>Licence</dt><dd>${img.license_url ? `<a href="${esc(img.license_url)}" rel="noreferrer">${esc(img.license)}</a>` : esc(img.license)}</dd>` : ""}
          <dt>Created</dt><dd>${esc(when(img.created_at))}</dd>
        </dl>
        <div class="actions">
          <button type="button" id="reuse">Reuse these settings</button>
          <a class="button secondary" id="download" href="${esc(img.url)}?download=true" download="${esc(img.id)}.png">Download PNG</a>
          <button type="button" class="secondary" id="delete">Delete</button>
        </div>
        <p class="hint">The PNG carries its parameters (A1111 “parameters” text and Solvent's own record).</p>
        <div id="detail-error"></div>
      </section>
    </div>
    <p><a href="#/history">Back to history</a></p>`;
  document.getElementById("reuse").addEventListener("click", () => {
    sessionStorage.setItem("reuse", JSON.stringify({ ...p, model: img.model, seed: img.seed }));
    location.hash = "#/create";
  });
  const del = document.getElementById("delete");
  del.addEventListener("click", async () => {
    if (del.dataset.armed !== "1") {
      del.dataset.armed = "1";
      del.textContent = "Confirm delete";
      del.classList.add("danger");
      return;
    }
    try {
      await api(`/api/images/${encodeURIComponent(img.id)}`, { method: "DELETE" });
      toast("Image deleted");
      location.hash = "#/history";
    } catch (err) {
      document.getElementById("detail-error").innerHTML = alertBox(err);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Account: plan, balance, usage, grants, password, API keys, members
// ---------------------------------------------------------------------------------------------

async function accountPage() {
  setTitle("Account");
  const me = state.me;
  const [balance, plans, usage, grants] = await Promise.all([
    api("/api/billing/balance"), api("/api/billing/plans"), api("/api/billing/usage?days=30"),
    api("/api/billing/grants").catch(() => ({ grants: [] })),
  ]);
  const plan = plans.plans.find((x) => x.id === me.org.plan) || { id: me.org.plan, name: me.org.plan };
  const allows = [
    plan.included_mc ? `${credits(plan.included_mc)} credits per ${plan.period}` : "no included credits",
    plan.daily_images ? `${plan.daily_images} images a day` : null,
    plan.commercial ? "commercial use" : "personal, non-commercial use",
    plan.max_pixels ? `up to ${plan.max_pixels.toLocaleString()} pixels` : null,
    plan.max_steps ? `up to ${plan.max_steps} steps` : null,
    plan.concurrent_jobs ? `${plan.concurrent_jobs} jobs at once` : null,
    plan.allowed_models && plan.allowed_models.length ? `models: ${plan.allowed_models.join(", ")}` : null,
  ].filter(Boolean);
  main.innerHTML = `
    <h1>Account</h1>
    <div class="cards">
      <section class="panel" aria-labelledby="plan-h"><h2 id="plan-h">Plan: ${esc(plan.name || plan.id)}</h2>
        <p>${plan.price_micros ? `${usd(plan.price_micros)} per ${esc(plan.period)}` : "Free"}</p>
        <ul id="plan-allows">${allows.map((a) => `<li>${esc(a)}</li>`).join("")}</ul></section>
      <section class="panel" aria-labelledby="bal-h"><h2 id="bal-h">Credits</h2>
        <p class="kpi"><span class="v" id="account-balance">${credits(balance.available_mc)}</span>
          <span class="k">available now</span></p>
        <p class="hint">Held for running jobs: ${credits(balance.held_mc)} · from grants ${credits(balance.by_source_mc.grants)},
          allowance ${credits(balance.by_source_mc.allowance)}, paid ${credits(balance.by_source_mc.paid)}</p></section>
    </div>
    <section class="panel" aria-labelledby="usage-h"><h2 id="usage-h">Usage, last 30 days</h2>
      <div id="usage-chart" class="chart" role="img" aria-label="Credits spent per day over the last 30 days"></div></section>
    <section class="panel" aria-labelledby="grants-h"><h2 id="grants-h">Grants</h2><div id="grants"></div></section>
    <section class="panel" aria-labelledby="pw-h"><h2 id="pw-h">Password</h2><div id="password-box"></div></section>
    <section class="panel" aria-labelledby="keys-h"><h2 id="keys-h">API keys</h2><div id="keys-box"></div></section>
    <section class="panel" aria-labelledby="members-h"><h2 id="members-h">Members</h2><div id="members-box"></div></section>`;
  lineChart(document.getElementById("usage-chart"), usage.days.map((d) => d.day),
    [{ label: "credits spent", values: usage.days.map((d) => d.credits_mc / 1000), stroke: "#1f5fbf" },
     { label: "images", values: usage.days.map((d) => d.images), stroke: "#1e6b35" }]);
  document.getElementById("grants").innerHTML = grants.grants.length ? `<table><thead><tr><th>Purpose</th>
    <th class="num">Granted</th><th class="num">Left</th><th>Expires</th></tr></thead><tbody>${grants.grants.map((g) =>
    `<tr><td>${esc(g.purpose)}</td><td class="num">${credits(g.amount_mc)}</td>
     <td class="num">${credits(g.remaining_mc)}</td><td>${esc(g.expires_at ? when(g.expires_at) : "never")}</td></tr>`).join("")}
    </tbody></table>` : `<p class="empty">No grants. Operators grant compute to projects they support.</p>`;
  passwordBox();
  if (isAdmin()) await keysBox(); else document.getElementById("keys-box").innerHTML =
    `<p class="empty">Only owners and admins of ${esc(me.org.name)} manage API keys.</p>`;
  await membersBox();
}

function passwordBox() {
  const box = document.getElementById("password-box");
  if (!state.me.user) { box.innerHTML = `<p class="hint">Signed in with an API key: no password.</p>`; return; }
  box.innerHTML = `<form id="password-form" class="row">
    <div><label for="pw-current">Current password</label><input id="pw-current" type="password" autocomplete="current-password"></div>
    <div><label for="pw-new">New password</label><input id="pw-new" type="password" autocomplete="new-password"></div>
    <div><button type="submit">Change password</button></div></form><div id="pw-msg"></div>`;
  document.getElementById("password-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("/api/auth/password", { method: "POST", body: {
        current_password: document.getElementById("pw-current").value,
        new_password: document.getElementById("pw-new").value } });
      document.getElementById("pw-msg").innerHTML = `<p class="ok" role="status">Password changed; other sessions were signed out.</p>`;
      ev.target.reset();
    } catch (err) { document.getElementById("pw-msg").innerHTML = alertBox(err); }
  });
}

async function keysBox() {
  const box = document.getElementById("keys-box");
  const { keys } = await api("/api/keys");
  box.innerHTML = `
    <form id="key-form" class="row">
      <div><label for="key-name">Name</label><input id="key-name" type="text" placeholder="e.g. my laptop"></div>
      <div><label for="key-scopes">Scopes</label><select id="key-scopes">
        <option value="generate,read">generate and read</option><option value="read">read only</option>
        <option value="generate,read,admin">generate, read and admin</option></select></div>
      <div><button type="submit" id="key-create">Create key</button></div>
    </form>
    <div id="key-new"></div>
    <table id="keys"><thead><tr><th>Name</th><th>Key</th><th>Scopes</th><th>Created</th><th>Last used</th><th>State</th><th></th></tr></thead>
    <tbody>${keys.map((k) => `<tr data-key="${esc(k.id)}"><td>${esc(k.name || "(unnamed)")}</td><td><code>${esc(k.prefix)}…</code></td>
      <td>${esc(k.scopes.join(", "))}</td><td>${esc(when(k.created_at))}</td><td>${esc(when(k.last_used_at))}</td>
      <td>${k.revoked_at ? "revoked" : "active"}</td><td>${k.revoked_at ? "" :
        `<button type="button" class="secondary revoke" data-id="${esc(k.id)}" aria-label="Revoke key ${esc(k.name || k.prefix)}">Revoke</button>`}</td></tr>`).join("")}
    </tbody></table>`;
  document.getElementById("key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const k = await api("/api/keys", { method: "POST", body: {
        name: document.getElementById("key-name").value, scopes: document.getElementById("key-scopes").value.split(",") } });
      await keysBox();
      document.getElementById("key-new").innerHTML = `<div class="notice" role="status"><strong>Copy this key now: it is shown once.</strong>
        <p class="secret" id="key-secret">${esc(k.secret)}</p><button type="button" id="key-copy" class="secondary">Copy</button></div>`;
      document.getElementById("key-copy").addEventListener("click", async () => {
        try { await navigator.clipboard.writeText(k.secret); toast("Copied"); }
        catch { const r = document.createRange(); r.selectNodeContents(document.getElementById("key-secret"));
          getSelection().removeAllRanges(); getSelection().addRange(r); toast("Selected: press Ctrl+C"); }
      });
    } catch (err) { document.getElementById("key-new").innerHTML = alertBox(err); }
  });
  for (const b of box.querySelectorAll("button.revoke")) b.addEventListener("click", async () => {
    try { await api(`/api/keys/${encodeURIComponent(b.dataset.id)}/revoke`, { method: "POST" }); toast("Key revoked"); await keysBox(); }
    catch (err) { document.getElementById("key-new").innerHTML = alertBox(err); }
  });
}

async function membersBox() {
  const box = document.getElementById("members-box");
  let members;
  try { ({ members } = await api("/api/org/members")); } catch (err) { box.innerHTML = alertBox(err); return; }
  const canInvite = ["owner", "admin"].includes(state.me.role);
  box.innerHTML = `<table id="members"><thead><tr><th>Email</th><th>Name</th><th>Role</th><th>Since</th></tr></thead><tbody>
    ${members.map((m) => `<tr><td>${esc(m.email)}</td><td>${esc(m.name)}</td><td>${esc(m.role)}</td><td>${esc(when(m.since))}</td></tr>`).join("")}
    </tbody></table>${canInvite ? `
    <form id="invite-form" class="row">
      <div><label for="invite-email">Invite by email</label><input id="invite-email" type="email"></div>
      <div><label for="invite-role">Role</label><select id="invite-role"><option>member</option><option>admin</option><option>viewer</option></select></div>
      <div><button type="submit">Invite</button></div></form><div id="invite-out"></div>` : ""}`;
  if (canInvite) document.getElementById("invite-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const inv = await api("/api/org/invitations", { method: "POST", body: {
        email: document.getElementById("invite-email").value, role: document.getElementById("invite-role").value } });
      document.getElementById("invite-out").innerHTML = `<div class="notice" role="status">Send ${esc(inv.email)} this
        invitation token (shown once; valid until ${esc(when(inv.expires_at))}):<p class="secret">${esc(inv.token)}</p></div>`;
    } catch (err) { document.getElementById("invite-out").innerHTML = alertBox(err); }
  });
}

// ---------------------------------------------------------------------------------------------
// Charts (uPlot, served by Solvent)
// ---------------------------------------------------------------------------------------------

export function lineChart(el, days, series) {
  const xs = days.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
  const points = series.reduce((n, s) => n + s.values.filter((v) => v).length, 0);
  el.dataset.points = String(points);
  if (!window.uPlot) { el.textContent = "The chart library did not load."; return null; }
  const width = Math.max(280, el.clientWidth || 600);
  const opts = {
    width, height: 220, scales: { x: { time: true } },
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, points: { show: true, size: 4 } }))],
    axes: [{}, { size: 60 }],
  };
  const chart = new window.uPlot(opts, [xs, ...series.map((s) => s.values)], el);
  const caption = document.createElement("p");
  caption.className = "hint";
  caption.textContent = series.map((s) => `${s.label}: total ${s.values.reduce((a, b) => a + b, 0).toLocaleString()}`).join(" · ");
  el.append(caption);
  return chart;
}

export function barTable(rows, cols) {
  // rows: [{label, value, text, ...}]; bars scale to the largest value.
  const max = Math.max(1, ...rows.map((r) => Math.abs(r.value)));
  return `<table><thead><tr>${cols.map((c) => `<th${c.num ? ' class="num"' : ""}>${esc(c.label)}</th>`).join("")}<th aria-hidden="true"></th></tr></thead>
    <tbody>${rows.map((r) => `<tr>${cols.map((c) => `<td${c.num ? ' class="num"' : ""}>${esc(r[c.key])}</td>`).join("")}
    <td class="barcell" aria-hidden="true"><div class="bar${r.idle ? " idle" : ""}" data-w="${Math.round(100 * Math.abs(r.value) / max)}"></div></td></tr>`).join("")}</tbody></table>`;
}

export function sizeBars(root) {
  for (const b of root.querySelectorAll(".bar[data-w]")) b.style.width = `${b.dataset.w}%`;
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

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
    if (page === "signin") await signinPage();
    else if (page === "create") await createPage(main);
    else if (page === "history") await historyPage();
    else if (page === "image") await imagePage(parts[1]);
    else if (page === "account") await accountPage();
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
