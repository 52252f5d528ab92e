// Small UI helpers every page uses: a toast, alert boxes, the document title.
import { esc, explain } from "./api.js";

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
