// Watching a job: its event stream drives the progress bar and step previews until it ends.
import { api } from "../api.js";

let current = null; // { id, source } of the job being watched (one at a time, across visits to the page)

export function watching() { return current; }

export function jobWatcher($, alive, onFinish) {
  function finish(job, err) {
    if (current && current.source) current.source.close();
    current = null;
    if (alive()) onFinish(job, err);
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
  return { watch };
}
