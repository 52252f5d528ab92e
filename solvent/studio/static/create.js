// The Create page: the request form, its price before it runs, a live progress bar with step previews
// over the job's event stream, cancel, results; img2img from an upload or a drop, and an inpainting mask.
import { api, credits, esc } from "./api.js";
import { alertBox, alertText, setTitle, toast } from "./app.js";

let current = null; // { id, source } of the job being watched

export async function createPage(main) {
  setTitle("Create");
  const [models, samplers, balance] = await Promise.all([
    api("/api/models"), api("/api/samplers"), api("/api/billing/balance"),
  ]);
  const reuse = JSON.parse(sessionStorage.getItem("reuse") || "null");
  sessionStorage.removeItem("reuse");
  main.innerHTML = `
    <h1>Create</h1>
    <div class="grid2">
      <form class="panel" id="create-form" novalidate aria-describedby="price">
        <label for="prompt">Prompt</label>
        <textarea id="prompt" required placeholder="a small red circle at the top left on a blue background"></textarea>
        <label for="negative">Negative prompt <span class="hint">(what to avoid)</span></label>
        <textarea id="negative" rows="2"></textarea>
        <div class="row">
          <div><label for="model">Model</label><select id="model"></select></div>
          <div><label for="sampler">Sampler</label><select id="sampler"></select></div>
        </div>
        <div class="row">
          <div><label for="size">Size</label><select id="size"></select></div>
          <div><label for="count">Images</label><input id="count" type="number" min="1" max="4" value="1"></div>
        </div>
        <div class="row">
          <div><label for="steps">Steps</label><input id="steps" type="number" min="1" max="150"></div>
          <div><label for="cfg">CFG scale</label><input id="cfg" type="number" min="0" max="35" step="0.5"></div>
        </div>
        <label class="check"><input type="checkbox" id="seed-lock"> Lock the seed</label>
        <label for="seed" class="hint">Seed (random unless locked)</label>
        <input id="seed" type="number" min="0" max="4294967295" disabled>
        <fieldset class="panel" id="lora-set"><legend>LoRAs</legend><div id="lora-box"></div></fieldset>
        <fieldset class="panel"><legend>Start from an image (img2img, inpainting)</legend>
          <div class="drop" id="drop"><label for="init-file">Drop an image here, or choose a file</label>
            <input id="init-file" type="file" accept="image/png,image/jpeg,image/webp"></div>
          <div id="init-box" hidden>
            <label for="strength">Strength <span class="hint" id="strength-out">0.75</span></label>
            <input id="strength" type="range" min="0.05" max="1" step="0.05" value="0.75">
            <label class="check"><input type="checkbox" id="inpaint"> Paint a mask (repaint only the painted area)</label>
            <div id="mask-tools" hidden class="row">
              <div><label for="brush">Brush size <span class="hint" id="brush-out">8</span></label>
                <input id="brush" type="range" min="1" max="48" value="8"></div>
              <div><button type="button" class="secondary" id="eraser" aria-pressed="false">Eraser</button>
                <button type="button" class="secondary" id="clear-mask">Clear mask</button></div>
            </div>
            <div class="mask-wrap"><img id="init-img" alt="the starting image"><canvas id="mask" hidden
              aria-label="Mask: paint the area to repaint"></canvas></div>
            <div class="actions"><button type="button" class="secondary" id="remove-init">Remove image</button></div>
          </div>
        </fieldset>
        <p class="price" id="price" aria-live="polite">Pricing…</p>
        <div id="create-error"></div>
        <div class="actions">
          <button type="submit" id="generate">Generate</button>
          <button type="button" class="secondary" id="cancel" hidden>Cancel</button>
          <span class="price">Balance: <strong id="balance">${credits(balance.available_mc)}</strong> credits</span>
        </div>
      </form>
      <section aria-labelledby="out-h">
        <h2 id="out-h">Results</h2>
        <div class="panel" id="run" hidden>
          <progress id="progress" max="100" value="0" aria-label="Generation progress"></progress>
          <p class="progress-label" id="progress-label" aria-live="polite"></p>
          <div class="preview"><img id="step-preview" alt="preview of the current step" hidden></div>
        </div>
        <div class="results" id="results"><p class="empty">Your images appear here.</p></div>
      </section>
    </div>`;
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
  for (const m of models) $("model").add(new Option(`${m.id} (${m.family})`, m.id));
  for (const s of samplers.samplers) $("sampler").add(new Option(s.label, s.name));
  const loras = [];
  const modelOf = () => models.find((m) => m.id === $("model").value) || models[0];

  function applyModel(keep) {
    const m = modelOf();
    const sel = $("size");
    const prev = keep ? sel.value : null;
    sel.innerHTML = "";
    for (const s of m.sizes) sel.add(new Option(s.label, `${s.width}x${s.height}`));
    if (prev && [...sel.options].some((o) => o.value === prev)) sel.value = prev;
    if (!keep) {
      $("steps").value = m.default_steps;
      $("cfg").value = m.default_cfg;
      $("sampler").value = m.default_sampler;
    }
    loras.length = 0;
    renderLoras();
  }

  function renderLoras() {
    const m = modelOf();
    const box = $("lora-box");
    if (!m.loras.length) {
      box.innerHTML = `<p class="hint">No LoRAs are installed for ${esc(m.id)}. Put <code>.safetensors</code> adapters in the
        server's <code>loras</code> folder.</p>`;
      return;
    }
    box.innerHTML = `<div class="row"><div><label for="lora-pick">Add a LoRA</label><select id="lora-pick">
      ${m.loras.map((l) => `<option>${esc(l)}</option>`).join("")}</select></div>
      <div><label for="lora-weight">Weight</label><input id="lora-weight" type="number" step="0.1" min="-2" max="2" value="0.8"></div>
      <div><button type="button" class="secondary" id="lora-add">Add</button></div></div>
      <div class="chips" id="lora-chips">${loras.map((l, i) => `<span class="chip">${esc(l.name)} × ${l.weight}
        <button type="button" class="link" data-i="${i}" aria-label="Remove ${esc(l.name)}">✕</button></span>`).join("")}</div>`;
    $("lora-add").addEventListener("click", () => {
      const name = $("lora-pick").value;
      if (!loras.some((l) => l.name === name)) loras.push({ name, weight: Number($("lora-weight").value) || 1 });
      renderLoras();
      requote();
    });
    for (const b of box.querySelectorAll("[data-i]")) b.addEventListener("click", () => {
      loras.splice(Number(b.dataset.i), 1);
      renderLoras();
      requote();
    });
  }

  // -- the starting image and its mask ---------------------------------------------------------
  let initData = null, painting = false, erasing = false, painted = false;
  const mask = $("mask");
  const ctx = mask.getContext("2d");
  function setInit(dataUrl) {
    initData = dataUrl;
    const img = $("init-img");
    img.onload = () => {
      mask.width = img.naturalWidth;
      mask.height = img.naturalHeight;
      ctx.clearRect(0, 0, mask.width, mask.height);
      painted = false;
    };
    img.src = dataUrl;
    $("init-box").hidden = false;
    requote();
  }
  function readFile(file) {
    if (!file) return;
    if (!/^image\/(png|jpeg|webp)$/.test(file.type)) {
      $("create-error").innerHTML = alertText("That image cannot be used", `${file.name} is not a PNG, JPEG or WEBP image.`);
      return;
    }
    const r = new FileReader();
    r.onload = () => setInit(r.result);
    r.readAsDataURL(file);
  }
  $("init-file").addEventListener("change", (ev) => readFile(ev.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    readFile(ev.dataTransfer.files[0]);
  });
  $("remove-init").addEventListener("click", () => {
    initData = null;
    $("init-img").removeAttribute("src");
    $("init-box").hidden = true;
    $("inpaint").checked = false;
    mask.hidden = true;
    $("mask-tools").hidden = true;
    $("init-file").value = "";
    requote();
  });
  $("strength").addEventListener("input", () => { $("strength-out").textContent = $("strength").value; });
  $("brush").addEventListener("input", () => { $("brush-out").textContent = $("brush").value; });
  $("inpaint").addEventListener("change", () => {
    mask.hidden = !$("inpaint").checked;
    $("mask-tools").hidden = !$("inpaint").checked;
    requote();
  });
  $("eraser").addEventListener("click", () => {
    erasing = !erasing;
    $("eraser").setAttribute("aria-pressed", String(erasing));
    $("eraser").textContent = erasing ? "Eraser (on)" : "Eraser";
  });
  $("clear-mask").addEventListener("click", () => { ctx.clearRect(0, 0, mask.width, mask.height); painted = false; });
  const at = (ev) => {
    const r = mask.getBoundingClientRect();
    return [(ev.clientX - r.left) * mask.width / r.width, (ev.clientY - r.top) * mask.height / r.height];
  };
  const dab = (ev) => {
    const [x, y] = at(ev);
    const size = Number($("brush").value) * mask.width / 256;
    ctx.globalCompositeOperation = erasing ? "destination-out" : "source-over";
    ctx.fillStyle = "rgba(230, 30, 30, 0.6)";
    ctx.beginPath();
    ctx.arc(x, y, Math.max(0.5, size / 2), 0, Math.PI * 2);
    ctx.fill();
    if (!erasing) painted = true;
  };
  mask.addEventListener("pointerdown", (ev) => { painting = true; mask.setPointerCapture(ev.pointerId); dab(ev); });
  mask.addEventListener("pointermove", (ev) => { if (painting) dab(ev); });
  mask.addEventListener("pointerup", () => { painting = false; });
  function maskData() {
    // White where painted, black elsewhere, at the starting image's size.
    const out = document.createElement("canvas");
    out.width = mask.width;
    out.height = mask.height;
    const o = out.getContext("2d");
    const src = ctx.getImageData(0, 0, mask.width, mask.height);
    const dst = o.createImageData(mask.width, mask.height);
    let any = false;
    for (let i = 0; i < src.data.length; i += 4) {
      const v = src.data[i + 3] > 0 ? 255 : 0;
      any = any || v > 0;
      dst.data[i] = dst.data[i + 1] = dst.data[i + 2] = v;
      dst.data[i + 3] = 255;
    }
    o.putImageData(dst, 0, 0);
    return any ? out.toDataURL("image/png") : null;
  }

  // -- the request, its price, and the run -----------------------------------------------------
  function body() {
    const [w, h] = $("size").value.split("x").map(Number);
    const b = {
      prompt: $("prompt").value, negative_prompt: $("negative").value, model: $("model").value,
      sampler: $("sampler").value, width: w, height: h, batch_size: Number($("count").value) || 1,
      steps: Number($("steps").value) || undefined, cfg_scale: $("cfg").value === "" ? undefined : Number($("cfg").value),
      loras: loras.slice(),
    };
    if ($("seed-lock").checked && $("seed").value !== "") b.seed = Number($("seed").value);
    if (initData) {
      b.init_image = initData;
      b.strength = Number($("strength").value);
      if ($("inpaint").checked) {
        const m = maskData();
        if (m) b.mask = m;
      }
    }
    return b;
  }
  let quoteTimer = null, quoteSeq = 0;
  function requote() {
    clearTimeout(quoteTimer);
    quoteTimer = setTimeout(async () => {
      if (!alive()) return;
      const seq = ++quoteSeq;
      try {
        const b = body(); // the price depends on the mode, not on the pixels: send stand-ins
        delete b.mask;
        if (b.init_image) b.init_image = tinyPng;
        if (initData && $("inpaint").checked) b.mask = tinyPng;
        const q = await api("/api/quote", { method: "POST", body: b });
        if (seq !== quoteSeq || !alive()) return;
        const price = $("price");
        price.dataset.priceMc = String(q.price_mc);
        price.innerHTML = `This costs <strong id="price-credits">${credits(q.price_mc)}</strong> credits` +
          ` (${q.images} image${q.images > 1 ? "s" : ""}); after it you will have about ` +
          `<strong>${credits(q.balance_mc - q.price_mc)}</strong>.` +
          (q.admissible ? "" : `<br><span class="warn">${esc(q.problems.map((p) => p.message).join(" "))}</span>`);
      } catch (err) {
        if (seq === quoteSeq && alive()) $("price").innerHTML = `<span class="warn">${esc(err.message)}</span>`;
      }
    }, 250);
  }
  form.addEventListener("input", requote);
  $("model").addEventListener("change", () => { applyModel(false); requote(); });
  $("seed-lock").addEventListener("change", () => { $("seed").disabled = !$("seed-lock").checked; requote(); });

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

  function finish(job, err) {
    if (current && current.source) current.source.close();
    current = null;
    if (!alive()) return;
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

  function watch(job) {
    $("run").hidden = false;
    $("progress").value = 0;
    $("progress-label").textContent = "Queued…";
    const src = new EventSource(`/api/jobs/${encodeURIComponent(job.id)}/events`);
    current = { id: job.id, source: src };
    const on = (name, fn) => src.addEventListener(name, (ev) => {
      if (!alive()) { src.close(); current = null; return; } // the person left the page; the job goes on
      fn(ev);
    });
    on("queued", (ev) => {
      const d = JSON.parse(ev.data);
      $("progress-label").textContent = d.position ? `Queued: ${d.position} job(s) ahead.` : "Starting…";
    });
    on("progress", (ev) => {
      const d = JSON.parse(ev.data);
      const pct = Math.round(100 * d.progress);
      $("progress").value = pct;
      $("progress-label").textContent = `Generating: ${pct}%`;
    });
    on("preview", (ev) => {
      const img = $("step-preview");
      img.src = `data:image/png;base64,${JSON.parse(ev.data).image}`;
      img.hidden = false;
    });
    for (const name of ["result", "failed", "canceled"]) on(name, (ev) => finish(JSON.parse(ev.data)));
    src.onerror = async () => {
      // The stream dropped (proxy, restart): fall back to asking once, then close.
      src.close();
      try {
        const j = await api(`/api/jobs/${encodeURIComponent(job.id)}`);
        if (["succeeded", "failed", "canceled"].includes(j.state)) finish(j);
        else setTimeout(() => current && current.id === j.id && watch(j), 1000);
      } catch (err) { finish(null, err); }
    };
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("create-error").innerHTML = "";
    if (!$("prompt").value.trim() && !initData) {
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
      watch(job);
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
    if (!current) return;
    try {
      await api(`/api/jobs/${encodeURIComponent(current.id)}/cancel`, { method: "POST" });
      toast("Cancelling…");
    } catch (err) { $("create-error").innerHTML = alertBox(err); }
  });

  // -- defaults, or the settings being reused --------------------------------------------------
  if (reuse && models.some((m) => m.id === reuse.model)) $("model").value = reuse.model;
  applyModel(false);
  if (reuse) {
    $("prompt").value = reuse.prompt || "";
    $("negative").value = reuse.negative_prompt || "";
    if (reuse.sampler) $("sampler").value = reuse.sampler;
    if (reuse.steps) $("steps").value = reuse.steps;
    if (reuse.cfg_scale != null) $("cfg").value = reuse.cfg_scale;
    if (reuse.width && reuse.height) {
      const v = `${reuse.width}x${reuse.height}`;
      if (![...$("size").options].some((o) => o.value === v)) $("size").add(new Option(`${reuse.width}×${reuse.height}`, v));
      $("size").value = v;
    }
    if (reuse.batch_size) $("count").value = reuse.batch_size;
    if (reuse.seed != null) { $("seed-lock").checked = true; $("seed").disabled = false; $("seed").value = reuse.seed; }
    for (const l of reuse.loras || []) if (modelOf().loras.includes(l.name)) loras.push(l);
    renderLoras();
    toast("Settings reused");
  }
  requote();
}

// A 1×1 PNG: quotes price the mode of a request without uploading its pixels.
const tinyPng = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==";
