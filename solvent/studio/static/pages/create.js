// The Create page: the request form, its price before it runs, a live progress bar with step previews
// over the job's event stream, cancel, results; img2img from an upload or a drop, and an inpainting mask.
// The parts live in create/: form.js (markup, model defaults, the body), loras.js (the picker), mask.js
// (starting image and mask), quote.js (the price), watch.js (the job's events).
import { api, credits, esc } from "../api.js";
import { controlPanel } from "../create/control.js";
import { referencePanel } from "../create/reference.js";
import { applyModel, applyReuse, formHtml, readBody } from "../create/form.js";
import { loraPicker } from "../create/loras.js";
import { maskPainter } from "../create/mask.js";
import { quoter } from "../create/quote.js";
import { jobWatcher, watching } from "../create/watch.js";
import { alertBox, alertText, setTitle, toast } from "../ui.js";

export async function createPage(main) {
  setTitle("Create");
  const [models, samplers, balance] = await Promise.all([
    api("/api/models"), api("/api/samplers"), api("/api/billing/balance"),
  ]);
  const reuse = JSON.parse(sessionStorage.getItem("reuse") || "null");
  sessionStorage.removeItem("reuse");
  main.innerHTML = formHtml(balance);
  const $ = (id) => document.getElementById(id);
  const form = $("create-form");
  const alive = () => document.body.contains(form); // false once the person has moved to another page
  if (!models.length) {
    $("create-error").innerHTML = alertText("Model unavailable", "No worker is serving a model right now; start one " +
      "with `solvent worker` or `solvent serve`, then reload.");
    $("generate").disabled = true;
    $("price").textContent = "";
    return;
  }
  for (const m of models) {
    const few = m.preset ? `, ${m.preset}: ${m.default_steps} steps` : "";
    $("model").add(new Option(`${m.id} (${m.family_label || m.family}${few})`, m.id));
  }
  for (const s of samplers.samplers) $("sampler").add(new Option(s.label, s.name));
  const modelOf = () => models.find((m) => m.id === $("model").value) || models[0];

  // 1. The parts of the form, each told to re-price the request when it changes.
  const loras = loraPicker($, modelOf, () => requote());
  const painter = maskPainter($, () => requote());
  const control = controlPanel($, modelOf, () => requote());
  const reference = referencePanel($, modelOf, () => requote());
  const body = () => readBody($, loras.chosen, painter, control, reference);
  const requote = quoter($, alive, body, () => !!painter.initData());
  const useModel = (keep) => { applyModel($, modelOf(), keep); loras.clear(); control.render(); reference.render(); };
  form.addEventListener("input", requote);
  $("model").addEventListener("change", () => { useModel(false); requote(); });
  $("seed-lock").addEventListener("change", () => { $("seed").disabled = !$("seed-lock").checked; requote(); });

  // 2. Results and the balance after a run.
  async function refreshBalance() {
    try {
      const b = await api("/api/billing/balance");
      if (alive()) $("balance").textContent = credits(b.available_mc);
    } catch { /* keep the last figure */ }
  }
  function showResult(job) {
    const res = $("results");
    res.innerHTML = "";
    for (const img of job.images) {
      const fig = document.createElement("figure");
      fig.innerHTML = `<a href="#/image/${esc(img.id)}"><img src="${esc(img.url)}" alt="${esc(job.params.prompt || "generated image")}"
        width="${img.width}" height="${img.height}"></a><figcaption>seed ${img.seed} · ${img.width}×${img.height}</figcaption>`;
      res.append(fig);
    }
  }
  function finished(job, err) {
    $("generate").disabled = false;
    $("cancel").hidden = true;
    if (err) $("create-error").innerHTML = alertBox(err);
    if (job && job.state === "succeeded") {
      $("progress").value = 100;
      $("progress-label").textContent = `Done in ${job.usage && job.usage.device_seconds != null ?
        Number(job.usage.device_seconds).toFixed(2) + " s of device time" : "a moment"}.`;
      $("step-preview").hidden = true;
      showResult(job);
    } else if (job && job.state === "canceled") {
      $("progress-label").textContent = "Cancelled.";
    } else if (job && job.state === "failed") {
      $("create-error").innerHTML = alertText("Generation failed",
        job.error ? job.error.message : "the worker reported an error.");
    }
    refreshBalance();
    requote();
  }
  const watcher = jobWatcher($, alive, finished);

  // 3. Submit and cancel.
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("create-error").innerHTML = "";
    if (!$("prompt").value.trim() && !painter.initData()) {
      $("create-error").innerHTML = alertText("Check the form", "Write a prompt (or start from an image).");
      $("prompt").focus();
      return;
    }
    $("generate").disabled = true;
    $("run").hidden = false;
    $("progress").value = 0;
    $("progress-label").textContent = "Submitting…";
    $("results").innerHTML = "";
    try {
      const job = await api("/api/jobs", { method: "POST", body: body() });
      $("cancel").hidden = false;
      refreshBalance();
      watcher.watch(job);
    } catch (err) {
      $("generate").disabled = false;
      $("run").hidden = true;
      $("create-error").innerHTML = alertBox(err);
      const field = err.field && { prompt: "prompt", steps: "steps", cfg_scale: "cfg", width: "size", height: "size",
        seed: "seed", model: "model" }[err.field];
      if (field) $(field).focus();
    }
  });
  $("cancel").addEventListener("click", async () => {
    const current = watching();
    if (!current) return;
    try {
      await api(`/api/jobs/${encodeURIComponent(current.id)}/cancel`, { method: "POST" });
      toast("Cancelling…");
    } catch (err) { $("create-error").innerHTML = alertBox(err); }
  });

  // 4. Defaults, or the settings being reused.
  if (reuse && models.some((m) => m.id === reuse.model)) $("model").value = reuse.model;
  useModel(false);
  if (reuse) {
    applyReuse($, reuse, modelOf(), loras.chosen);
    loras.render();
    toast("Settings reused");
  }
  requote();
}
