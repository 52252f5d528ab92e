// The Create form: its markup, the model-dependent fields, and the request body it describes.
import { credits } from "../api.js";

export function formHtml(balance) {
  return `
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
        <fieldset class="panel" id="control-set"><legend>Control (ControlNet, T2I-Adapter)</legend><div id="control-box"></div></fieldset>
        <fieldset class="panel" id="reference-set"><legend>Image prompt (IP-Adapter)</legend><div id="reference-box"></div></fieldset>
        <div class="row" id="refiner-box" hidden></div>
        <div class="row">
          <div><label for="vae">VAE</label><select id="vae"></select></div>
          <div><label for="clip-skip">CLIP skip</label><input id="clip-skip" type="number" min="1" max="12" value="1"></div>
        </div>
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
}

// Size choices, and (unless `keep`) steps, CFG and sampler from the model's defaults.
export function applyModel($, model, keep) {
  const vae = $("vae");
  vae.innerHTML = "";
  vae.add(new Option(model.default_vae ? `the model's default (${model.default_vae})` : "the model's own", ""));
  for (const v of model.vaes || []) vae.add(new Option(v, v));
  const sel = $("size");
  const prev = keep ? sel.value : null;
  sel.innerHTML = "";
  for (const s of model.sizes) sel.add(new Option(s.label, `${s.width}x${s.height}`));
  if (prev && [...sel.options].some((o) => o.value === prev)) sel.value = prev;
  // Only the samplers that run this model's family (flow-matching ones for SD3 and Flux) can be picked.
  const runs = new Set(model.samplers || []);
  for (const o of $("sampler").options) o.hidden = o.disabled = runs.size > 0 && !runs.has(o.value);
  if ($("sampler").selectedOptions[0]?.disabled) $("sampler").value = model.default_sampler;
  if (!keep) {
    $("steps").value = model.default_steps;
    $("cfg").value = model.default_cfg;
    $("sampler").value = model.default_sampler;
  }
}

// The request the form describes (the starting image and mask from the painter, the LoRAs from the picker).
export function readBody($, loras, painter, control, reference) {
  const [w, h] = $("size").value.split("x").map(Number);
  const b = {
    prompt: $("prompt").value, negative_prompt: $("negative").value, model: $("model").value,
    sampler: $("sampler").value, width: w, height: h, batch_size: Number($("count").value) || 1,
    steps: Number($("steps").value) || undefined, cfg_scale: $("cfg").value === "" ? undefined : Number($("cfg").value),
    loras: loras.slice(),
  };
  if ($("vae").value) b.vae = $("vae").value;
  const skip = Number($("clip-skip").value);
  if (skip > 1) b.clip_skip = skip;
  const unit = control && control.unit();
  if (unit) b.controlnets = [unit];
  if (reference) Object.assign(b, reference.fields());
  if ($("seed-lock").checked && $("seed").value !== "") b.seed = Number($("seed").value);
  const init = painter.initData();
  if (init) {
    b.init_image = init;
    b.strength = Number($("strength").value);
    if ($("inpaint").checked) {
      const m = painter.maskData();
      if (m) b.mask = m;
    }
  }
  return b;
}

// Fill the form from an image's settings ("Reuse these settings"); LoRAs the model cannot take are skipped.
export function applyReuse($, reuse, model, loras) {
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
  for (const l of reuse.loras || []) if (model.loras.includes(l.name)) loras.push(l);
}
