// The operator dashboard: cost, revenue and margin; cost per image; utilisation and idle cost;
// compute given away; burn, runway, budgets and their alerts; the queue and the workers.
import { api, ApiError, credits, esc, usd, when } from "../api.js";
import { barTable, lineChart, sizeBars } from "../charts.js";
import { alertBox, setTitle } from "../ui.js";

const pct = (bp) => (bp == null ? "–" : `${(bp / 100).toFixed(1)}%`);

export async function dashboardPage(main) {
  setTitle("Dashboard");
  const report = (by) => api(`/api/admin/ledger/report?by=${by}`);
  const [byDay, byModel, byWorker, byProvider, byGrant, byPaid, budgets, queue, workers] = await Promise.all([
    report("day"), report("model"), report("worker"), report("provider"), report("grant"), report("paid_by"),
    api("/api/admin/ledger/budgets"), api("/api/admin/queue"), api("/api/admin/workers"),
  ]);
  let runway = null, runwayErr = null;
  try { runway = await api("/api/admin/ledger/runway"); } catch (err) {
    if (err instanceof ApiError && err.code === "validation_error") runwayErr = err; else throw err;
  }
  const t = byDay.total;
  const alerts = budgets.budgets.flatMap((b) => b.alerts.map((a) => ({ ...a, budget: b })));
  main.innerHTML = `
    <h1>Operator dashboard</h1>
    <p class="hint">Last 30 days, from the compute ledger (${esc(when(byDay.start))} – ${esc(when(byDay.end))}).</p>
    ${alerts.length ? `<div class="alert" role="alert" id="budget-alerts"><strong>Budget alerts</strong><ul>${alerts.map((a) =>
      `<li>${esc(a.budget.name)} (${esc(a.budget.scope)}, ${esc(a.period)}) reached ${a.threshold_percent}%:
       ${usd(a.spent_micros, 4)} of ${usd(a.budget.limit_micros, 4)} · ${esc(when(a.at))}</li>`).join("")}</ul></div>` : ""}
    <div class="kpis" id="kpis">
      <div class="kpi"><div class="v" id="kpi-cost">${usd(t.total_cost_micros)}</div><div class="k">cost (busy + idle)</div></div>
      <div class="kpi"><div class="v" id="kpi-revenue">${usd(t.revenue_micros)}</div><div class="k">revenue</div></div>
      <div class="kpi"><div class="v ${t.margin_micros < 0 ? "warn" : "ok"}" id="kpi-margin">${usd(t.margin_micros)}</div><div class="k">margin</div></div>
      <div class="kpi"><div class="v">${t.images.toLocaleString()}</div><div class="k">images</div></div>
      <div class="kpi"><div class="v">${pct(t.utilisation_bp)}</div><div class="k">utilisation</div></div>
      <div class="kpi"><div class="v">${usd(t.idle_micros)}</div><div class="k">idle cost</div></div>
      <div class="kpi"><div class="v">${usd(t.given_away_cost_micros)}</div><div class="k">cost of compute given away</div></div>
      <div class="kpi"><div class="v" id="kpi-runway">${runway ? (runway.months == null ? "unlimited" : `${runway.months} months`) : "not set"}</div>
        <div class="k">runway</div></div>
    </div>
    <section class="panel" aria-labelledby="money-h"><h2 id="money-h">Cost, revenue and margin per day</h2>
      <div id="chart-money" class="chart" role="img" aria-label="Cost, revenue and margin per day in US dollars"></div></section>
    <div class="cards">
      <section class="panel" aria-labelledby="model-h"><h2 id="model-h">Cost per image by model</h2><div id="by-model"></div></section>
      <section class="panel" aria-labelledby="given-h"><h2 id="given-h">Compute given away</h2><div id="given"></div></section>
    </div>
    <div class="cards">
      <section class="panel" aria-labelledby="worker-h"><h2 id="worker-h">Utilisation and idle cost by worker</h2><div id="by-worker"></div></section>
      <section class="panel" aria-labelledby="provider-h"><h2 id="provider-h">By provider</h2><div id="by-provider"></div></section>
    </div>
    <section class="panel" aria-labelledby="runway-h"><h2 id="runway-h">Burn and runway</h2><div id="runway"></div></section>
    <section class="panel" aria-labelledby="budgets-h"><h2 id="budgets-h">Budgets</h2><div id="budgets"></div></section>
    <div class="cards">
      <section class="panel" aria-labelledby="queue-h"><h2 id="queue-h">Queue</h2><div id="queue"></div></section>
      <section class="panel" aria-labelledby="workers-h"><h2 id="workers-h">Workers</h2><div id="workers"></div></section>
    </div>`;
  const $ = (id) => document.getElementById(id);
  const days = byDay.lines.map((l) => l.key);
  lineChart($("chart-money"), days, [
    { label: "cost $", values: byDay.lines.map((l) => l.total_cost_micros / 1e6), stroke: "#b3261e" },
    { label: "revenue $", values: byDay.lines.map((l) => l.revenue_micros / 1e6), stroke: "#1e6b35" },
    { label: "margin $", values: byDay.lines.map((l) => l.margin_micros / 1e6), stroke: "#1f5fbf" },
  ]);
  const real = (lines) => lines.filter((l) => l.key !== "__idle__");
  $("by-model").innerHTML = real(byModel.lines).length ? barTable(real(byModel.lines).map((l) => ({
    label: l.key, images: l.images.toLocaleString(), cpi: usd(l.cost_per_image_micros, 5), value: l.cost_per_image_micros || 0,
  })), [{ key: "label", label: "model" }, { key: "images", label: "images", num: true }, { key: "cpi", label: "$/image", num: true }])
    : `<p class="empty">No priced jobs yet.</p>`;
  const given = [
    ...byPaid.lines.filter((l) => l.key === "free").map((l) => ({ label: "free tier", l })),
    ...byGrant.lines.filter((l) => l.key !== "(none)").map((l) => ({ label: `grant ${l.key}`, l })),
  ].filter((g) => g.l.given_away_mc > 0);
  $("given").innerHTML = given.length ? barTable(given.map(({ label, l }) => ({
    label, credits: credits(l.given_away_mc), cost: usd(l.given_away_cost_micros, 4), value: l.given_away_cost_micros,
  })), [{ key: "label", label: "to" }, { key: "credits", label: "credits", num: true }, { key: "cost", label: "it cost", num: true }])
    : `<p class="empty">Nothing given away in this period.</p>`;
  const util = (r) => (r.lines.length ? barTable(r.lines.map((l) => ({
    label: l.key, util: pct(l.utilisation_bp), busy: usd(l.cost_micros, 4), idlecost: usd(l.idle_micros, 4),
    value: l.idle_micros, idle: true,
  })), [{ key: "label", label: r.by }, { key: "util", label: "utilisation", num: true },
    { key: "busy", label: "busy cost", num: true }, { key: "idlecost", label: "idle cost", num: true }])
    : `<p class="empty">No worker time in this period.</p>`);
  $("by-worker").innerHTML = util(byWorker);
  $("by-provider").innerHTML = util(byProvider);
  sizeBars(main);
  renderRunway($("runway"), runway, runwayErr, () => dashboardPage(main));
  $("budgets").innerHTML = budgets.budgets.length ? `<table id="budget-table"><thead><tr><th>Budget</th><th>Scope</th>
    <th>Period</th><th class="num">Spent</th><th class="num">Reserved</th><th class="num">Limit</th><th class="num">Used</th>
    <th>Kind</th></tr></thead><tbody>${budgets.budgets.map((b) => `<tr><td>${esc(b.name)}</td><td>${esc(b.scope)}</td>
    <td>${esc(b.period_key)}</td><td class="num">${usd(b.spent_micros, 4)}</td><td class="num">${usd(b.reserved_micros, 4)}</td>
    <td class="num">${b.limit_micros == null ? "–" : usd(b.limit_micros, 2)}</td>
    <td class="num ${b.used_percent >= 100 ? "warn" : ""}">${b.used_percent == null ? "–" : b.used_percent + "%"}</td>
    <td>${b.active ? "" : "disabled · "}${b.hard ? "hard cap" : "alerts"}${b.runway_floor_months != null ?
      ` · pauses below ${b.runway_floor_months} months of runway` : ""}</td></tr>`).join("")}</tbody></table>`
    : `<p class="empty">No budgets. Create one with <code>solvent budgets create</code> to cap what is given away.</p>`;
  const c = queue.counts;
  $("queue").innerHTML = `<p id="queue-depth">${c.queued} queued · ${c.running} running · ${c.succeeded} succeeded ·
    ${c.failed} failed · ${c.canceled} cancelled</p>
    <p>Oldest waiting: ${queue.oldest_queued_seconds == null ? "none" : `${queue.oldest_queued_seconds.toFixed(1)} s`} ·
    median wait (last hour): ${queue.wait_last_hour.median_seconds == null ? "–" : `${queue.wait_last_hour.median_seconds.toFixed(2)} s`}
    over ${queue.wait_last_hour.jobs} jobs</p>
    ${queue.running.length ? `<table><thead><tr><th>Job</th><th>Model</th><th>Worker</th><th class="num">Progress</th></tr></thead>
    <tbody>${queue.running.map((j) => `<tr><td><code>${esc(j.id)}</code></td><td>${esc(j.model)}</td><td>${esc(j.worker_id)}</td>
    <td class="num">${Math.round(100 * j.progress)}%</td></tr>`).join("")}</tbody></table>` : `<p class="hint">Nothing running.</p>`}`;
  $("workers").innerHTML = workers.workers.length ? `<table id="worker-table"><thead><tr><th>Worker</th><th>Hardware</th>
    <th>Provider</th><th class="num">Rate</th><th>Status</th><th>Last heartbeat</th></tr></thead><tbody>
    ${workers.workers.map((w) => `<tr><td>${esc(w.name || w.id)}</td><td>${esc(hardware(w.hardware))}</td>
    <td>${esc([w.provider, w.instance_type, w.commitment].filter(Boolean).join(" · "))}</td>
    <td class="num">${w.usd_per_hour ? `${esc(w.usd_per_hour)}/h` : "unpriced"}</td>
    <td class="${w.alive ? "ok" : "warn"}">${esc(w.status)}</td><td>${esc(when(w.last_heartbeat_at))}</td></tr>`).join("")}
    </tbody></table>` : `<p class="empty">No workers have joined.</p>`;
}

function hardware(h) {
  if (!h) return "–";
  if (h.kind === "gpu") return `${h.count || 1}× ${h.gpu}`;
  return `${h.kind}${h.cpus ? ` (${h.cpus} cores)` : ""}`;
}

function renderRunway(box, r, err, reload) {
  const form = `<form id="finances-form" class="row">
      <div><label for="fin-cash">Cash on hand ($)</label><input id="fin-cash" type="number" min="0" step="1" required></div>
      <div><label for="fin-payroll">Payroll / month</label><input id="fin-payroll" type="number" min="0" step="1" value="0"></div>
      <div><label for="fin-rent">Rent / month</label><input id="fin-rent" type="number" min="0" step="1" value="0"></div>
      <div><label for="fin-other">Other / month</label><input id="fin-other" type="number" min="0" step="1" value="0"></div>
      <div><label for="fin-committed">Committed cloud / month</label><input id="fin-committed" type="number" min="0" step="1" value="0"></div>
      <div><button type="submit">Record finances</button></div></form><div id="fin-error"></div>`;
  if (!r) {
    box.innerHTML = `<p class="notice">${esc(err ? err.message : "")} Record cash on hand and monthly costs to see burn and runway.</p>${form}`;
  } else {
    box.innerHTML = `<table><tbody>
      <tr><th>Cash on hand</th><td class="num">${usd(r.cash_micros, 0)}</td></tr>
      <tr><th>Cloud, metered (30-day trend)</th><td class="num">${usd(r.cloud_metered_micros, 0)} / month</td></tr>
      <tr><th>Cloud, committed</th><td class="num">${usd(r.cloud_committed_micros, 0)} / month</td></tr>
      <tr><th>Payroll, rent, other</th><td class="num">${usd(r.fixed_micros, 0)} / month</td></tr>
      <tr><th>Gross burn</th><td class="num">${usd(r.gross_burn_micros, 0)} / month</td></tr>
      <tr><th>Revenue</th><td class="num">${usd(r.revenue_micros, 0)} / month</td></tr>
      <tr><th>Net burn</th><td class="num">${usd(r.net_burn_micros, 0)} / month</td></tr>
      <tr><th>Runway</th><td class="num" id="runway-months">${r.months == null ? "unlimited: revenue covers the burn" :
        `${esc(r.months)} months (${esc(r.days)} days)`}</td></tr></tbody></table>
      <details><summary>Update finances</summary>${form}</details>`;
  }
  document.getElementById("finances-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = (id) => String(document.getElementById(id).value || "0");
    try {
      await api("/api/admin/ledger/finances", { method: "POST", body: {
        cash: v("fin-cash"), payroll: v("fin-payroll"), rent: v("fin-rent"), other: v("fin-other"),
        committed_cloud: v("fin-committed") } });
      await reload();
    } catch (e) { document.getElementById("fin-error").innerHTML = alertBox(e); }
  });
}
