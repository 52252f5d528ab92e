import { alertText } from "../ui.js";

// Pictures the Create form takes in: a file chosen or dropped (read as a data URL), or a sketch drawn on a pad.

// `use(dataUrl)` for a PNG, JPEG or WEBP file chosen in `input` or dropped on `zone`; `refuse(file)` for others.
export function readDropped(zone, input, use, refuse) {
  const read = (file) => {
    if (!file) return;
    if (!/^image\/(png|jpeg|webp)$/.test(file.type)) {
      if (refuse) refuse(file);
      return;
    }
    const r = new FileReader();
    r.onload = () => use(r.result);
    r.readAsDataURL(file);
  };
  input.addEventListener("change", (ev) => read(ev.target.files[0]));
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("over");
    read(ev.dataTransfer.files[0]);
  });
}

// The error shown for a file that is not a picture the API takes.
export const notAPicture = (file) => alertText("That image cannot be used", `${file.name} is not a PNG, JPEG or WEBP image.`);

// A drawing pad: white strokes on black (what silhouette and scribble ControlNets read), square at `size`.
export function sketchPad(box, size, use) {
  box.innerHTML = `<canvas id="sketch" width="${size}" height="${size}" class="sketch"
      aria-label="Drawing pad: draw the shape in white"></canvas>
    <div class="row"><div><label for="sketch-brush">Brush size</label>
      <input id="sketch-brush" type="range" min="1" max="64" value="${Math.max(2, Math.round(size / 16))}"></div>
      <div class="actions"><button type="button" class="secondary" id="sketch-fill">Fill shape</button>
      <button type="button" class="secondary" id="sketch-clear">Clear</button>
      <button type="button" id="sketch-use">Use drawing</button></div></div>`;
  const canvas = box.querySelector("#sketch");
  const ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "black"; ctx.fillRect(0, 0, size, size); };
  clear();
  let drawing = false;
  let path = [];
  const at = (ev) => {
    const r = canvas.getBoundingClientRect();
    return [(ev.clientX - r.left) * (size / r.width), (ev.clientY - r.top) * (size / r.height)];
  };
  canvas.addEventListener("pointerdown", (ev) => { drawing = true; path = [at(ev)]; canvas.setPointerCapture(ev.pointerId); });
  canvas.addEventListener("pointermove", (ev) => {
    if (!drawing) return;
    const [x, y] = at(ev);
    const [px, py] = path[path.length - 1];
    ctx.strokeStyle = "white";
    ctx.lineCap = "round";
    ctx.lineWidth = Number(box.querySelector("#sketch-brush").value);
    ctx.beginPath(); ctx.moveTo(px, py); ctx.lineTo(x, y); ctx.stroke();
    path.push([x, y]);
  });
  canvas.addEventListener("pointerup", () => { drawing = false; });
  box.querySelector("#sketch-fill").addEventListener("click", () => { // close the last stroke into a filled shape
    if (path.length < 3) return;
    ctx.fillStyle = "white";
    ctx.beginPath(); ctx.moveTo(...path[0]);
    for (const p of path.slice(1)) ctx.lineTo(...p);
    ctx.closePath(); ctx.fill();
  });
  box.querySelector("#sketch-clear").addEventListener("click", () => { clear(); path = []; });
  box.querySelector("#sketch-use").addEventListener("click", () => use(canvas.toDataURL("image/png")));
}
