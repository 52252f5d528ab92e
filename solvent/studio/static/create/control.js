// One control unit: the ControlNet or T2I-Adapter (of those that fit the model), a control image (uploaded,
// dropped or drawn), its preprocessor (previewed by the server before anything is generated) and its weight.
import { api, esc } from "../api.js";
import { alertBox } from "../ui.js";
import { notAPicture, readDropped, sketchPad } from "./picture.js";

const PREPROCESSORS = ["none", "scribble", "canny", "invert", "threshold"];

export function controlPanel($, modelOf, onChange) {
  let image = null; // data URL of the control image
  function render() {
    const m = modelOf();
    const box = $("control-box");
    image = null;
    if (!(m.controlnets || []).length) {
      box.innerHTML = `<p class="hint">No ControlNet or T2I-Adapter is installed for ${esc(m.id)}.</p>`;
      onChange();
      return;
    }
    box.innerHTML = `<div class="row">
        <div><label for="control-model">ControlNet</label><select id="control-model"><option value="">off</option>
          ${m.controlnets.map((c) => `<option>${esc(c)}</option>`).join("")}</select></div>
        <div><label for="control-pre">Preprocessor</label><select id="control-pre">
          ${PREPROCESSORS.map((p) => `<option>${p}</option>`).join("")}</select></div>
        <div><label for="control-weight">Weight</label><input id="control-weight" type="number" min="0" max="2"
          step="0.1" value="1"></div>
        <div><label for="control-mode">Control mode</label><select id="control-mode">
          <option value="balanced">Balanced</option><option value="prompt">My prompt is more important</option>
          <option value="controlnet">ControlNet is more important</option></select></div></div>
      <div class="drop" id="control-drop"><label for="control-file">Control image (a silhouette, a scribble, an edge
        map): drop it here, choose a file, or draw it on the pad</label>
        <input id="control-file" type="file" accept="image/png,image/jpeg,image/webp"></div>
      <div class="actions"><button type="button" class="secondary" id="control-draw">Open the drawing pad</button></div>
      <div id="control-pad"></div>
      <div class="row"><div><img id="control-img" alt="the control image" hidden></div>
        <div><img id="control-preview" alt="what the preprocessor makes of it" hidden></div></div>
      <div id="control-error"></div>`;
    const use = (data) => { image = data; $("control-img").src = image; $("control-img").hidden = false; preview(); };
    readDropped($("control-drop"), $("control-file"), use, (file) => { $("control-error").innerHTML = notAPicture(file); });
    $("control-draw").addEventListener("click", () => {
      const m = modelOf();
      sketchPad($("control-pad"), m.native_resolution || 512, (data) => { $("control-pre").value = "none"; use(data); });
    });
    for (const id of ["control-model", "control-pre", "control-weight", "control-mode"]) {
      $(id).addEventListener("change", () => {
        if (id === "control-pre") preview();
        onChange();
      });
    }
  }
  async function preview() {
    if (!image) return;
    try {
      const out = await api("/api/control/preview", { method: "POST", body: { image, preprocessor: $("control-pre").value } });
      $("control-preview").src = `data:image/png;base64,${out.image}`;
      $("control-preview").hidden = false;
      $("control-error").innerHTML = "";
    } catch (err) { $("control-error").innerHTML = alertBox(err); }
    onChange();
  }
  function unit() {
    const sel = document.getElementById("control-model");
    if (!sel || !sel.value || !image) return null;
    return { model: sel.value, image, preprocessor: $("control-pre").value,
      weight: Number($("control-weight").value) || 1, control_mode: $("control-mode").value };
  }
  return { render, unit };
}
