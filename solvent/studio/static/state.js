// What the studio knows about the signed-in caller (loaded by app.js at start and after sign-in).
import { api, ApiError } from "./api.js";

export const state = { me: null, options: null };

export function isOperator() { return !!state.me && (state.me.scopes || []).includes("operator"); }
export function isAdmin() { return !!state.me && (state.me.scopes || []).includes("admin"); }

// Who is signed in (null when nobody is), and the top bar to match.
export async function loadMe() {
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
