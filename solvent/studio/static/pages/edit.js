// An image's Upscale, Extend and Erase: each sends the image to the native API as a new job, shows its progress,
// then opens the new image. Erase paints its mask on a canvas over the picture.
import { api, esc } from "../api.js";
import { alertBox, alertText, toast } from "../ui.js";

export function editHtml(img) {
  return `
    <section class="panel" aria-labelledby="edit-h">
      <h2 id="edit-h">Edit</h2>
      <div class="edit-tabs" role="tablist">
        <button type="button" role="tab" class="secondary" data-tab="upscale" aria-selected="true">Upscale</button>
        <button type="button" role="tab" class="secondary" data-tab="extend" aria-selected="false">Extend</button>
        <button type="button" role="tab" class="secondary" data-tab="erase" aria-selected="false">Erase</button>
      </div>
      <form id="edit-upscale" data-pane="upscale">
        <label>Upscaler <select id="up-name"><option value="auto">default</option></select></label>
        <label>Scale <select id="up-scale"><option value="2">×2</option><option value="4" selected>×4</option></select></label>
        <button type="submit" id="up-go">Upscale</button>
      </form>
      <form id="edit-extend" data-pane="extend" hidden>
        <div class="sides">
          ${["left", "right", "up", "down"].map((s) => `<label>${s[0].toUpperCase() + s.slice(1)} <input type="number"
            id="ext-${s}" min="0" max="2048" step="8" value="${s === "right" ? 64 : 0}"></label>`).join("")}
        </div>
        <label>Prompt for the new part <input id="ext-prompt" maxlength="2000" value="${esc(img.prompt || "")}"></label>
        <button type="submit" id="ext-go">Extend</button>
      </form>
      <form id="edit-erase" data-pane="erase" hidden>
        <p class="hint">Paint over what to erase on the picture, then erase it.</p>
        <label>Brush <input type="range" id="erase-brush" min="2" max="64" value="12"></label>
        <button type="button" class="secondary" id="erase-clear">Clear</button>
        <button type="submit" id="erase-go">Erase</button>
      </form>
      <p id="edit-status" role="status" aria-live="polite"></p>
      <div id="edit-error"></div>
    </section>`;
}

async function imageB64(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  const blob = await r.blob();
  return new Promise((resolve) => {
    const fr = new FileReader();
    fr.onload = () => resolve(fr.result);
    fr.readAsDataURL(blob);
  });
}

async function finish(job, label) {
  const status = document.getElementById("edit-status");
  for (;;) {
    if (!document.body.contains(status)) return;  // the page was left
    if (job.state === "succeeded") {
      toast(`${label} done`);
      location.hash = `#/image/${encodeURIComponent(job.images[0].id)}`;
      return;
    }
    if (job.state === "failed" || job.state === "canceled") {
      throw Object.assign(new Error(job.error?.message || job.state), { title: `${label} failed` });
    }
    status.textContent = `${label}… ${Math.round((job.progress || 0) * 100)}%`;
    await new Promise((r) => setTimeout(r, 300));
    job = await api(`/api/jobs/${encodeURIComponent(job.id)}`);
  }
}

export function wireEdit(img) {
  const $ = (id) => document.getElementById(id);
  const error = (err) => {
    $("edit-error").innerHTML = err.title ? alertText(err.title, err.message) : alertBox(err);
    $("edit-status").textContent = "";
  };
  document.querySelectorAll("[data-tab]").forEach((tab) => tab.addEventListener("click", () => {
    document.querySelectorAll("[data-tab]").forEach((t) => t.setAttribute("aria-selected", String(t === tab)));
    document.querySelectorAll("[data-pane]").forEach((p) => { p.hidden = p.dataset.pane !== tab.dataset.tab; });
    mask.hidden = tab.dataset.tab !== "erase";
  }));
  api("/api/upscalers").then((ups) => {
    $("up-name").innerHTML += ups.map((u) => `<option value="${esc(u.id)}">${esc(u.id)} (×${u.scale})</option>`).join("");
  }).catch(error);
  // Extend and Erase repaint with the model that made the image, or (an upscaled image's "model" is its
  // upscaler) the first model the workers serve.
  let painter = img.model;
  api("/api/models").then((models) => {
    if (!models.some((m) => m.id === img.model) && models.length) painter = models[0].id;
  }).catch(error);

  // The erase mask: a canvas over the picture, painted white where the pointer goes.
  const picture = $("detail-img");
  const mask = document.createElement("canvas");
  mask.id = "erase-mask";
  mask.width = img.width;
  mask.height = img.height;
  mask.hidden = true;
  mask.className = "mask-overlay";
  picture.parentElement.style.position = "relative";
  picture.parentElement.appendChild(mask);
  const ctx = mask.getContext("2d");
  let painting = false, painted = false;
  const paint = (ev) => {
    if (!painting) return;
    const box = mask.getBoundingClientRect();
    const x = (ev.clientX - box.left) * (mask.width / box.width), y = (ev.clientY - box.top) * (mask.height / box.height);
    ctx.fillStyle = "rgba(255,255,255,0.85)";
    ctx.beginPath();
    ctx.arc(x, y, Number($("erase-brush").value) / 2, 0, Math.PI * 2);
    ctx.fill();
    painted = true;
  };
  mask.addEventListener("pointerdown", (ev) => { painting = true; paint(ev); });
  mask.addEventListener("pointermove", paint);
  window.addEventListener("pointerup", () => { painting = false; });
  $("erase-clear").addEventListener("click", () => { ctx.clearRect(0, 0, mask.width, mask.height); painted = false; });

  const run = async (label, path, body) => {
    $("edit-error").innerHTML = "";
    $("edit-status").textContent = `${label}…`;
    try {
      const job = await api(path, { method: "POST", body: { image: await imageB64(img.url), ...body } });
      await finish(job, label);
    } catch (err) {
      error(err);
    }
  };
  $("edit-upscale").addEventListener("submit", (ev) => {
    ev.preventDefault();
    run("Upscale", "/api/upscale", { upscaler: $("up-name").value, scale: Number($("up-scale").value) });
  });
  $("edit-extend").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const sides = Object.fromEntries(["left", "right", "up", "down"].map((s) => [s, Number($(`ext-${s}`).value) || 0]));
    run("Extend", "/api/outpaint", { ...sides, model: painter, prompt: $("ext-prompt").value });
  });
  $("edit-erase").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!painted) {
      error({ title: "Nothing to erase", message: "Paint over the part of the picture to erase first." });
      return;
    }
    const out = document.createElement("canvas");  // white where painted, black elsewhere
    out.width = mask.width;
    out.height = mask.height;
    const o = out.getContext("2d");
    o.fillStyle = "#000";
    o.fillRect(0, 0, out.width, out.height);
    o.drawImage(mask, 0, 0);
    run("Erase", "/api/erase", { model: painter, mask: out.toDataURL("image/png") });
  });
}
