// Account: plan, balance, usage, grants, password, API keys, members.
import { api, credits, esc, usd, when } from "../api.js";
import { toast, alertBox, setTitle } from "../ui.js";
import { state, isAdmin } from "../state.js";
import { lineChart } from "../charts.js";

export async function accountPage(main) {
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
