// The starting image (upload or drop) and the inpainting mask painted over it.
import { notAPicture, readDropped } from "./picture.js";

export function maskPainter($, onChange) {
  let initData = null, painting = false, erasing = false;
  const mask = $("mask");
  const ctx = mask.getContext("2d");
  function setInit(dataUrl) {
    initData = dataUrl;
    const img = $("init-img");
    img.onload = () => {
      mask.width = img.naturalWidth;
      mask.height = img.naturalHeight;
      ctx.clearRect(0, 0, mask.width, mask.height);
    };
    img.src = dataUrl;
    $("init-box").hidden = false;
    onChange();
  }
  readDropped($("drop"), $("init-file"), setInit, (file) => { $("create-error").innerHTML = notAPicture(file); });
  $("remove-init").addEventListener("click", () => {
    initData = null;
    $("init-img").removeAttribute("src");
    $("init-box").hidden = true;
    $("inpaint").checked = false;
    mask.hidden = true;
    $("mask-tools").hidden = true;
    $("init-file").value = "";
    onChange();
  });
  $("strength").addEventListener("input", () => { $("strength-out").textContent = $("strength").value; });
  $("brush").addEventListener("input", () => { $("brush-out").textContent = $("brush").value; });
  $("inpaint").addEventListener("change", () => {
    mask.hidden = !$("inpaint").checked;
    $("mask-tools").hidden = !$("inpaint").checked;
    onChange();
  });
  $("eraser").addEventListener("click", () => {
    erasing = !erasing;
    $("eraser").setAttribute("aria-pressed", String(erasing));
    $("eraser").textContent = erasing ? "Eraser (on)" : "Eraser";
  });
  $("clear-mask").addEventListener("click", () => { ctx.clearRect(0, 0, mask.width, mask.height); });
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
  };
  mask.addEventListener("pointerdown", (ev) => { painting = true; mask.setPointerCapture(ev.pointerId); dab(ev); });
  mask.addEventListener("pointermove", (ev) => { if (painting) dab(ev); });
  mask.addEventListener("pointerup", () => { painting = false; });
  function maskData() {
    // White where painted, black elsewhere, at the starting image's size; null when nothing is painted.
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
  return { initData: () => initData, maskData };
}
