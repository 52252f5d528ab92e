// The price of the request as the form stands, asked again (debounced) whenever it changes.
import { api, credits, esc } from "../api.js";

// A 1×1 PNG: quotes price the mode of a request without uploading its pixels.
const tinyPng = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==";

export function quoter($, alive, body, hasInit) {
  let timer = null, seq = 0;
  return function requote() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (!alive()) return;
      const mine = ++seq;
      try {
        const b = body(); // the price depends on the mode, not on the pixels: send stand-ins
        delete b.mask;
        if (b.init_image) b.init_image = tinyPng;
        if (hasInit() && $("inpaint").checked) b.mask = tinyPng;
        for (const u of b.controlnets || []) u.image = tinyPng;
        const q = await api("/api/quote", { method: "POST", body: b });
        if (mine !== seq || !alive()) return;
        const price = $("price");
        price.dataset.priceMc = String(q.price_mc);
        price.innerHTML = `This costs <strong id="price-credits">${credits(q.price_mc)}</strong> credits` +
          ` (${q.images} image${q.images > 1 ? "s" : ""}); after it you will have about ` +
          `<strong>${credits(q.balance_mc - q.price_mc)}</strong>.` +
          (q.admissible ? "" : `<br><span class="warn">${esc(q.problems.map((p) => p.message).join(" "))}</span>`);
      } catch (err) {
        if (mine === seq && alive()) $("price").innerHTML = `<span class="warn">${esc(err.message)}</span>`;
      }
    }, 250);
  };
}
