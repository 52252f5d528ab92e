// One image: its parameters, cost, licence; reuse its settings, download, delete.
import { api, credits, esc, when } from "../api.js";
import { toast, alertBox, setTitle } from "../ui.js";
import { editHtml, wireEdit } from "./edit.js";

const PARAM_LABELS = [
  ["prompt", "Prompt"], ["negative_prompt", "Negative prompt"], ["width", "Width"], ["height", "Height"],
  ["steps", "Steps"], ["cfg_scale", "CFG scale"], ["sampler", "Sampler"], ["seed", "Seed (job)"],
  ["batch_size", "Images"], ["strength", "Strength"], ["loras", "LoRAs"],
];

export async function imagePage(main, id) {
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
      ${editHtml(img)}
    </div>
    <p><a href="#/history">Back to history</a></p>`;
  wireEdit(img);
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
