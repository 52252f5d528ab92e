// The LoRA picker: the adapters installed for the chosen model, each added once with a weight.
import { esc } from "../api.js";

export function loraPicker($, modelOf, onChange) {
  const chosen = [];
  function render() {
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
      <div class="chips" id="lora-chips">${chosen.map((l, i) => `<span class="chip">${esc(l.name)} × ${l.weight}
        <button type="button" class="link" data-i="${i}" aria-label="Remove ${esc(l.name)}">✕</button></span>`).join("")}</div>`;
    $("lora-add").addEventListener("click", () => {
      const name = $("lora-pick").value;
      if (!chosen.some((l) => l.name === name)) chosen.push({ name, weight: Number($("lora-weight").value) || 1 });
      render();
      onChange();
    });
    for (const b of box.querySelectorAll("[data-i]")) b.addEventListener("click", () => {
      chosen.splice(Number(b.dataset.i), 1);
      render();
      onChange();
    });
  }
  function clear() { chosen.length = 0; render(); }
  return { chosen, render, clear };
}
