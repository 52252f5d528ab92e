// History: the organisation's images, newest first, searchable by prompt and model.
import { api, esc } from "../api.js";
import { alertBox, setTitle } from "../ui.js";

export async function historyPage(main) {
  setTitle("History");
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const q = params.get("q") || "", model = params.get("model") || "";
  main.innerHTML = `
    <h1>History</h1>
    <form class="panel row" id="history-form" role="search">
      <div><label for="history-q">Search prompts</label><input id="history-q" type="search" value="${esc(q)}"></div>
      <div><label for="history-model">Model</label><select id="history-model"><option value="">All models</option></select></div>
      <div><button type="submit">Search</button></div>
    </form>
    <div id="history-error"></div>
    <div class="gallery" id="gallery" aria-live="polite"></div>
    <div class="actions"><button type="button" class="secondary" id="more" hidden>Show more</button></div>`;
  const gallery = document.getElementById("gallery");
  let cursor = null;
  const load = async () => {
    if (!document.body.contains(gallery)) return;
    const qs = new URLSearchParams({ limit: "24" });
    if (q) qs.set("q", q);
    if (model) qs.set("model", model);
    if (cursor) qs.set("cursor", cursor);
    try {
      const page = await api(`/api/images?${qs}`);
      if (!document.body.contains(gallery)) return;
      const sel = document.getElementById("history-model");
      if (sel.options.length === 1) for (const m of page.models) sel.add(new Option(m, m, false, m === model));
      for (const img of page.images) {
        const fig = document.createElement("figure");
        fig.innerHTML = `<a href="#/image/${esc(img.id)}" aria-label="Open image: ${esc(img.prompt || "(no prompt)")}">
          <img src="${esc(img.url)}" alt="${esc(img.prompt || "generated image")}" loading="lazy" width="${img.width}" height="${img.height}">
          <figcaption>${esc(img.prompt || "(no prompt)")}<br>${esc(img.model)} · seed ${img.seed}</figcaption></a>`;
        gallery.append(fig);
      }
      if (!gallery.children.length)
        gallery.outerHTML = `<p class="empty" id="gallery">${q || model ? "No images match this search." :
          'No images yet. <a href="#/create">Make your first one</a>.'}</p>`;
      cursor = page.next_cursor;
      document.getElementById("more").hidden = !cursor;
    } catch (err) {
      const box = document.getElementById("history-error");
      if (box) box.innerHTML = alertBox(err);
    }
  };
  document.getElementById("more").addEventListener("click", load);
  document.getElementById("history-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const qs = new URLSearchParams();
    const nq = document.getElementById("history-q").value.trim(), nm = document.getElementById("history-model").value;
    if (nq) qs.set("q", nq);
    if (nm) qs.set("model", nm);
    location.hash = `#/history${qs.toString() ? "?" + qs : ""}`;
  });
  await load();
}
