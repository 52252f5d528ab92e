// Talking to Solvent's JSON API: the session cookie rides along, writes carry the CSRF token.

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || "http_error";
    this.field = e.field || null;
    this.body = body;
  }
}

function csrf() {
  const m = document.cookie.match(/(?:^|;\s*)solvent_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : sessionStorage.getItem("csrf") || "";
}

export async function api(path, { method = "GET", body, raw = false } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const r = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  if (raw) return r;
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: { message: text } }; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// What a person should read for each error the API can give a studio request.
const TITLES = {
  insufficient_credits: "Out of credits",
  daily_quota: "Daily image quota reached",
  key_cap_reached: "Spending cap reached",
  plan_limit: "Not included in your plan",
  budget_exceeded: "Paused by a budget",
  model_not_found: "Model unavailable",
  unsupported_model: "Model unavailable",
  queue_full: "Server busy",
  too_many_requests: "Server busy",
  rate_limited: "Too many requests",
  validation_error: "Check the form",
  invalid_image: "That image cannot be used",
  unauthorized: "Signed out",
  forbidden: "Not allowed",
  account_locked: "Account locked",
  engine_error: "Generation failed",
  out_of_memory: "Generation failed",
  canceled: "Cancelled",
};

export function explain(err) {
  if (!(err instanceof ApiError)) return { title: "Cannot reach the server", message: String(err.message || err) };
  let title = TITLES[err.code] || (err.status >= 500 ? "Server error" : "Request refused");
  let message = err.message;
  if (err.code === "insufficient_credits") message += " Ask an owner to buy credits or an operator for a grant.";
  if (err.status === 429 && err.body && err.body.error && err.body.error.retry_after)
    message += ` Try again in ${err.body.error.retry_after} s.`;
  if (err.status === 503 && !TITLES[err.code]) title = "Server busy";
  return { title, message, field: err.field };
}

export const credits = (mc) => (mc == null ? "–" : (mc / 1000).toLocaleString(undefined, { maximumFractionDigits: 3 }));
// Dollars from integer micro-dollars; amounts under a dollar get 4 places so small costs do not read as $0.00.
export const usd = (micros, places) => {
  if (micros == null) return "–";
  const p = places ?? (Math.abs(micros) < 1e6 && micros !== 0 ? 4 : 2);
  return (micros < 0 ? "−$" : "$") +
    (Math.abs(micros) / 1e6).toLocaleString("en-US", { minimumFractionDigits: p, maximumFractionDigits: p });
};
export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
export function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
