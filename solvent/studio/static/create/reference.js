// The image prompt (IP-Adapter): reference images that steer the look, each with its scale, and the
// adapter's weight; and the SDXL refiner with its switch point.
import { esc } from "../api.js";
import { alertText } from "../ui.js";
import { notAPicture, readDropped } from "./picture.js";

export function referencePanel($, modelOf, onChange) {
  let refs = []; // [{image, scale}]
  function render() {
    const m = modelOf();
    const box = $("reference-box");
    refs = [];
    if (!(m.ip_adapters || []).length) {
      box.innerHTML = `<p class="hint">No IP-Adapter is installed for ${esc(m.id)}.</p>`;
    } else {
      box.innerHTML = `<div class="row">
          <div><label for="ip-model">IP-Adapter</label><select id="ip-model"><option value="">off</option>
            ${m.ip_adapters.map((c) => `<option>${esc(c)}</option>`).join("")}</select></div>
          <div><label for="ip-weight">Weight</label><input id="ip-weight" type="number" min="0" max="2" step="0.1"
            value="0.6"></div></div>
        <div class="drop" id="ip-drop"><label for="ip-file">Reference images (up to 4): drop them here or choose
          files</label><input id="ip-file" type="file" accept="image/png,image/jpeg,image/webp"></div>
        <ul class="refs" id="ip-list"></ul><div id="ip-error"></div>`;
      readDropped($("ip-drop"), $("ip-file"), (image) => {
        if (refs.length >= 4) {
          $("ip-error").innerHTML = alertText("Too many references", "An image prompt takes at most 4 reference images.");
          return;
        }
        refs.push({ image, scale: 1 });
        $("ip-error").innerHTML = "";
        list();
      }, (file) => { $("ip-error").innerHTML = notAPicture(file); });
      for (const id of ["ip-model", "ip-weight"]) $(id).addEventListener("change", onChange);
    }
    const rbox = $("refiner-box");
    if (!(m.refiners || []).length) {
      rbox.hidden = true;
      rbox.innerHTML = "";
    } else {
      rbox.hidden = false;
      rbox.innerHTML = `<div><label for="refiner">Refiner</label><select id="refiner"><option value="">none</option>
          ${m.refiners.map((r) => `<option>${esc(r)}</option>`).join("")}</select></div>
        <div><label for="refiner-switch">Switch at</label><input id="refiner-switch" type="number" min="0.05"
          max="0.95" step="0.05" value="0.8"></div>`;
    }
    onChange();
  }
  function list() {
    $("ip-list").innerHTML = refs.map((r, i) => `<li><img src="${r.image}" alt="reference ${i + 1}" width="64">
      <label for="ip-scale-${i}">Scale</label><input id="ip-scale-${i}" type="number" min="0" max="2" step="0.1"
        value="${r.scale}"><button type="button" class="secondary" data-drop="${i}">Remove</button></li>`).join("");
    refs.forEach((r, i) => {
      $(`ip-scale-${i}`).addEventListener("change", (ev) => { r.scale = Number(ev.target.value); onChange(); });
    });
    for (const b of $("ip-list").querySelectorAll("[data-drop]")) {
      b.addEventListener("click", () => { refs.splice(Number(b.dataset.drop), 1); list(); });
    }
    onChange();
  }
  // The request's `ip_adapters`, `refiner` and `refiner_switch`, where set.
  function fields() {
    const out = {};
    const sel = document.getElementById("ip-model");
    if (sel && sel.value && refs.length) {
      out.ip_adapters = [{ model: sel.value, weight: Number($("ip-weight").value), images: refs.map((r) => ({ ...r })) }];
    }
    const ref = document.getElementById("refiner");
    if (ref && ref.value) {
      out.refiner = ref.value;
      out.refiner_switch = Number($("refiner-switch").value) || 0.8;
    }
    return out;
  }
  return { render, fields };
}
