"""The studio end to end: real headless Chromium (Playwright) against a live `solvent serve` with solvent-tiny.

Screenshots of each page are written to test-artifacts/studio/ (kept by CI as artifacts).
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.harness import env_for, free_port, wait_http

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "studio"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
PROMPT = "a red circle on a blue background"
LORA = "tiny-style"


def write_tiny_lora(path: Path) -> None:
    """A kohya-layout LoRA shaped for solvent-tiny's UNet and text encoder (the picker lists it)."""
    from solvent.tiny.recipe.arch import build_pipeline

    from ..lora_files import write_kohya

    path.parent.mkdir(parents=True, exist_ok=True)
    pipe = build_pipeline(0)
    write_kohya(pipe.unet, pipe.text_encoder, path)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`solvent serve` on a fresh home, its in-process worker priced at $2.50/h; the printed credentials."""
    home = tmp_path_factory.mktemp("studio-home")
    write_tiny_lora(home / "home" / "loras" / f"{LORA}.safetensors")
    from solvent.config import Settings
    from solvent.engine.store import ModelStore
    from tests.adapter_files import write_image_encoder, write_ip_adapter
    from tests.engine.test_adapters import _unet

    store = ModelStore(Settings(home=home / "home"))  # an IP-Adapter and its encoder, installed before serving
    write_image_encoder(home / "encoder")
    store.add(home / "encoder", model_id="tiny-vit")
    write_ip_adapter(home / "ip-tiny.safetensors", _unet())
    store.add(home / "ip-tiny.safetensors", model_id="ip-tiny")
    from tests.flow_models import build_flux, write_flux_files

    flux = write_flux_files(build_flux(schnell=True), home / "flux")  # a Flux.1 [schnell] file, as downloaded
    store.add(flux.pop("path"), model_id="flux1-schnell", components=flux)
    port = free_port()
    log_path = home / "serve.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below, after the server stops
    proc = subprocess.Popen([sys.executable, "-m", "solvent.cli.main", "serve", "--port", str(port), "--usd-per-hour",
                             "2.50"], env=env_for(home / "home"), stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", timeout=120)
        deadline = time.time() + 30
        while time.time() < deadline and "admin API key" not in log_path.read_text():
            time.sleep(0.2)
        out = log_path.read_text()
        m = re.search(r"studio: (\S+)\s+sign in as (\S+) with password (\S+)", out)
        assert m, out
        key = re.search(r"admin API key \(shown once[^\n]*\n\s+(\S+)", out).group(1)
        yield {"base": base, "url": m.group(1), "email": m.group(2), "password": m.group(3), "key": key}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert shutil.which("chromium"), "Debian's chromium is not installed (scripts/test installs it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page, server, email=None, password=None) -> None:
    page.goto(server["url"])
    page.get_by_label("Email", exact=True).first.fill(email or server["email"])
    page.locator("#signin-password").fill(password or server["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#prompt")


def unlabelled(page) -> list[str]:
    """Form controls on the page that have neither a <label> nor an aria-label (accessibility)."""
    return page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter((el) => el.offsetParent !== null && !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
        .map((el) => el.id || el.outerHTML)""")


LOW_CONTRAST_JS = """() => {
  // WCAG 2 contrast of each visible text's colour against the background it is drawn on (alpha blended).
  const parse = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const lin = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = (c) => 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
  const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3]));
  const backdrop = (el) => { const layers = [];
    for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; } }
    let out = [255, 255, 255]; for (const c of layers.reverse()) out = over(c, out); return out; };
  const bad = [], seen = new Set();
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const el = walk.currentNode.parentElement, text = walk.currentNode.textContent.trim();
    if (!text || seen.has(el) || el.closest('option, [disabled], [hidden]')) continue;
    seen.add(el);
    const st = getComputedStyle(el), box = el.getBoundingClientRect();
    if (st.visibility === 'hidden' || Number(st.opacity) === 0 || !box.width || !box.height) continue;
    const back = backdrop(el), fg = over(parse(st.color), back);
    const ratio = (Math.max(lum(fg), lum(back)) + 0.05) / (Math.min(lum(fg), lum(back)) + 0.05);
    const size = parseFloat(st.fontSize), large = size >= 24 || (Number(st.fontWeight) >= 700 && size >= 18.66);
    if (ratio < (large ? 3 : 4.5)) bad.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}`
      + ` "${text.slice(0, 30)}": ${ratio.toFixed(2)}:1`);
  }
  return bad;
}"""


def low_contrast(page) -> list[str]:
    """Visible text below WCAG AA contrast (4.5:1, or 3:1 for large text) against its background."""
    return page.evaluate(LOW_CONTRAST_JS)


def api(server, method, path, **kw):
    return httpx.request(method, server["base"] + path, headers={"Authorization": f"Bearer {server['key']}"},
                         timeout=60, **kw)


def test_sign_in_generate_find_reuse_download_delete(page, server):
    page.goto(server["url"])
    shot(page, "signin")
    assert unlabelled(page) == [] and low_contrast(page) == []
    sign_in(page, server)
    assert page.locator("#who").inner_text().startswith(server["email"])
    assert unlabelled(page) == [] and low_contrast(page) == []
    balance_before = page.locator("#balance").inner_text()
    page.fill("#prompt", PROMPT)
    page.fill("#steps", "100")  # long enough for several progress events
    page.wait_for_function("() => /costs/.test(document.getElementById('price').textContent)")
    assert re.search(r"This costs [\d.]+ credits", page.locator("#price").inner_text())
    # Record every value the progress bar shows.
    page.evaluate("""() => { window.seen = []; const p = document.getElementById('progress');
        new MutationObserver(() => window.seen.push(Number(p.value))).observe(p, {attributes: true}); }""")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_selector("#results figure img", timeout=60_000)
    seen = page.evaluate("window.seen")
    assert any(0 < v < 100 for v in seen), f"the bar never showed progress between 0 and 100: {seen}"
    assert seen[-1] == 100 and seen == sorted(seen), seen
    page.wait_for_function("(b) => document.getElementById('balance').textContent !== b", arg=balance_before)
    img = page.locator("#results figure img").first
    page.wait_for_function("(el) => el.complete && el.naturalWidth === 64", arg=img.element_handle())
    shot(page, "create")
    assert low_contrast(page) == []

    # History: the image is there, found by its prompt and model; a search for something else is empty.
    page.get_by_role("link", name="History").click()
    page.wait_for_selector("#gallery figure")
    assert PROMPT in page.locator("#gallery").inner_text()
    page.fill("#history-q", "purple elephant")
    page.get_by_role("button", name="Search").click()
    page.wait_for_selector("p#gallery.empty")
    page.fill("#history-q", "RED circle")
    page.select_option("#history-model", "solvent-tiny")
    page.get_by_role("button", name="Search").click()
    page.wait_for_selector("#gallery figure")
    # A thumbnail shows the whole image: drawn at the image's own aspect ratio (square here), never a band.
    page.wait_for_function("() => { const i = document.querySelector('#gallery img'); return i.complete && i.naturalWidth; }")
    box = page.locator("#gallery img").first.bounding_box()
    assert box["width"] > 100 and abs(box["height"] - box["width"]) <= 1, box
    shot(page, "history")
    assert low_contrast(page) == []

    # Detail: every parameter, seed, cost in credits, commercial-use flag.
    page.locator("#gallery figure a").first.click()
    page.wait_for_selector("#params")
    params = page.locator("#params")
    assert params.locator("[data-param=prompt]").inner_text() == PROMPT
    assert params.locator("[data-param=steps]").inner_text() == "100"
    seed = params.locator("[data-param=image-seed]").inner_text()
    assert seed.isdigit()
    assert re.fullmatch(r"[\d.,]+ credits", params.locator("[data-param=cost]").inner_text())
    assert "allowed" in params.locator("[data-param=commercial]").inner_text()
    shot(page, "image")
    assert low_contrast(page) == []

    # Download with metadata (the same bytes the link serves, with the page's session).
    href = page.locator("#download").get_attribute("href")
    resp = page.context.request.get(server["base"] + href)
    assert resp.status == 200 and "attachment" in resp.headers["content-disposition"]
    png = Image.open(io.BytesIO(resp.body()))
    assert PROMPT in png.info["parameters"] and f"Seed: {seed}" in png.info["parameters"]

    # Reuse: the create form comes back filled in, with the seed locked.
    image_url = page.url
    page.get_by_role("button", name="Reuse these settings").click()
    page.wait_for_selector("#prompt")
    assert page.input_value("#prompt") == PROMPT
    assert page.input_value("#steps") == "100"
    assert page.is_checked("#seed-lock") and page.input_value("#seed") == seed
    shot(page, "reuse")

    # Delete (two steps), and the image is gone.
    page.goto(image_url)
    image_id = image_url.rsplit("/", 1)[1]
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="Confirm delete").click()
    page.wait_for_url(re.compile(r"#/history$"))
    assert api(server, "GET", f"/api/images/{image_id}").status_code == 404


def _scene_png() -> bytes:
    img = Image.new("RGB", (64, 64), (30, 60, 200))
    for x in range(20, 44):
        for y in range(20, 44):
            img.putpixel((x, y), (220, 30, 30))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _last_job(server) -> dict:
    return api(server, "GET", "/api/jobs?limit=1").json()["jobs"][0]


def test_img2img_by_drop_and_inpaint_with_a_painted_mask(page, server, tmp_path):
    sign_in(page, server)
    page.fill("#prompt", "a green square on a yellow background")
    # img2img: drop an image on the drop zone.
    page.evaluate("""(b64) => { const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer(); dt.items.add(new File([bytes], 'scene.png', {type: 'image/png'}));
        document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true})); }""",
                  base64.b64encode(_scene_png()).decode())
    page.wait_for_function("() => document.getElementById('init-img').naturalWidth === 64")
    page.fill("#strength", "0.6")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_selector("#results figure img", timeout=60_000)
    job = _last_job(server)
    assert job["mode"] == "img2img" and job["params"]["strength"] == 0.6 and job["state"] == "succeeded"

    # Inpainting: upload a file, paint a stroke on the mask, erase part of it, generate.
    path = tmp_path / "scene.png"
    path.write_bytes(_scene_png())
    page.click("#remove-init")
    page.set_input_files("#init-file", str(path))
    page.wait_for_function("() => document.getElementById('init-img').naturalWidth === 64")
    page.check("#inpaint")
    page.fill("#brush", "40")
    page.locator("#mask").scroll_into_view_if_needed()
    box = page.locator("#mask").bounding_box()
    page.mouse.move(box["x"] + 10, box["y"] + 10)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    page.get_by_role("button", name="Eraser").click()
    page.mouse.click(box["x"] + 10, box["y"] + 10)
    painted = page.evaluate("""() => { const c = document.getElementById('mask');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
    assert 0 < painted < 64 * 64
    shot(page, "inpaint")
    page.wait_for_function("() => !document.getElementById('generate').disabled")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function("() => /Done/.test(document.getElementById('progress-label').textContent)"
                           " && document.querySelector('#results figure img')", timeout=60_000)
    job = _last_job(server)
    assert job["mode"] == "inpaint" and job["state"] == "succeeded", job


def test_lora_picker_step_previews_and_cancel(page, server):
    sign_in(page, server)
    # The picker offers the LoRA the worker declared for solvent-tiny; add it at weight 0.5.
    assert page.locator("#lora-pick option").all_inner_texts() == [LORA]
    page.fill("#lora-weight", "0.5")
    page.get_by_role("button", name="Add", exact=True).click()
    assert f"{LORA} × 0.5" in page.locator("#lora-chips").inner_text()
    page.fill("#prompt", PROMPT)
    page.fill("#steps", "4")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function("() => /Done/.test(document.getElementById('progress-label').textContent)", timeout=60_000)
    job = _last_job(server)
    assert job["state"] == "succeeded" and job["params"]["loras"] == [{"name": LORA, "weight": 0.5}], job
    png = Image.open(io.BytesIO(api(server, "GET", f"/api/images/{job['images'][0]['id']}").content))
    assert f'Lora weights: "{LORA}: 0.5"' in png.info["parameters"]  # the engine applied it
    shot(page, "lora")

    # Reusing the image's settings brings the LoRA back; removing its chip leaves none.
    page.locator("#results figure a").first.click()
    page.get_by_role("button", name="Reuse these settings").click()
    page.wait_for_selector("#lora-chips .chip")
    assert f"{LORA} × 0.5" in page.locator("#lora-chips").inner_text()
    page.get_by_role("button", name=f"Remove {LORA}").click()
    assert page.locator("#lora-chips .chip").count() == 0

    # A long job: step previews appear while it runs, then Cancel stops it.
    page.fill("#steps", "150")
    page.fill("#count", "4")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function("""() => { const img = document.getElementById('step-preview');
        return !img.hidden && img.src.startsWith('data:image/png;base64,') && img.complete && img.naturalWidth > 0; }""",
                           timeout=60_000)
    assert page.evaluate("document.getElementById('step-preview').naturalWidth") == 64
    progress = page.evaluate("document.getElementById('progress').value")
    assert 0 < progress < 100
    shot(page, "preview")
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_function("() => document.getElementById('progress-label').textContent === 'Cancelled.'",
                           timeout=60_000)
    job = _last_job(server)
    assert job["state"] == "canceled" and job["params"]["steps"] == 150 and not job["images"], job
    assert page.locator("#results figure").count() == 0 and page.is_enabled("#generate")
    shot(page, "cancelled")


def test_api_keys_create_copy_use_with_curl_and_revoke(page, server):
    sign_in(page, server)
    page.get_by_role("link", name="Account").click()
    page.wait_for_selector("#key-form")
    assert unlabelled(page) == [] and low_contrast(page) == []
    page.wait_for_function("() => Number(document.getElementById('usage-chart').dataset.points) > 0")
    page.fill("#key-name", "curl test")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#key-secret").inner_text().strip()
    assert secret.startswith("sk-solvent-")
    shot(page, "account")

    def curl(key: str) -> tuple[int, str]:
        out = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-H", f"Authorization: Bearer {key}",
                              f"{server['base']}/api/me"], capture_output=True, text=True, timeout=30, check=True)
        body, _, code = out.stdout.rpartition("\n")
        return int(code), body

    code, body = curl(secret)
    assert code == 200 and json.loads(body)["org"]["name"] == "admin"
    page.get_by_role("button", name="Revoke key curl test").click()
    page.wait_for_function("() => [...document.querySelectorAll('#keys tr')].some((r) => "
                           "r.textContent.includes('curl test') && r.textContent.includes('revoked'))")
    code, body = curl(secret)
    assert code == 401 and json.loads(body)["error"]["code"] == "unauthorized"


def test_sign_up_out_of_credits_message_and_no_dashboard(page, server):
    page.goto(server["url"])
    page.fill("#signup-email", "maker@example.com")
    page.fill("#signup-password", "a long enough password")
    page.get_by_role("button", name="Create account").click()
    page.wait_for_selector("#prompt")
    assert page.locator("#nav-dashboard").is_hidden()
    # The operator moves this organisation to a plan with nothing in it.
    r = api(server, "PUT", "/api/admin/plans/empty", json={"name": "Empty", "price_micros": 0, "period": "month",
                                                          "included_mc": 0, "daily_images": None, "commercial": False})
    assert r.status_code == 200, r.text
    org_id = page.evaluate("() => fetch('/api/me').then((r) => r.json()).then((m) => m.org.id)")
    assert api(server, "POST", f"/api/admin/orgs/{org_id}/plan?plan=empty").status_code == 200
    page.reload()
    page.wait_for_selector("#prompt")
    page.fill("#prompt", PROMPT)
    page.get_by_role("button", name="Generate").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "Out of credits" in alert.inner_text() and "credits" in alert.inner_text().split("Out of credits", 1)[1]
    shot(page, "out-of-credits")
    assert low_contrast(page) == []
    # No dashboard for a non-operator: not in the menu, refused by the page and by the API.
    page.goto(server["url"] + "#/dashboard")
    page.wait_for_selector("text=Not available")
    status = page.evaluate("() => fetch('/api/admin/queue').then((r) => r.status)")
    assert status == 403
    shot(page, "dashboard-refused")


def test_operator_dashboard_draws_the_ledger(page, server):
    # A soft budget with a tiny limit, so the next job's cost raises an alert the dashboard must show.
    r = api(server, "POST", "/api/admin/ledger/budgets", json={"scope": "all", "limit_usd": "0.000001",
                                                              "thresholds": [100], "name": "tiny"})
    assert r.status_code == 201, r.text
    job = api(server, "POST", "/api/jobs", json={"prompt": PROMPT}).json()
    deadline = time.time() + 60
    while api(server, "GET", f"/api/jobs/{job['id']}").json()["state"] != "succeeded":
        assert time.time() < deadline
        time.sleep(0.3)
    sign_in(page, server)
    page.get_by_role("link", name="Dashboard").click()
    page.wait_for_selector("#chart-money canvas")
    assert int(page.locator("#chart-money").get_attribute("data-points")) > 0
    drawn = page.evaluate("""() => { const c = document.querySelector('#chart-money canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] > 150 && d[i + 1] < 80 && d[i + 2] < 80) n++; return n; }""")
    assert drawn > 20, "the cost series (red) is not drawn"
    assert page.locator("#kpi-cost").inner_text() not in ("$0.00", "$0.0000")
    assert "tiny" in page.locator("#budget-alerts").inner_text()
    assert "$2.5000/h" in page.locator("#worker-table").inner_text()
    assert "solvent-tiny" in page.locator("#by-model").inner_text()
    # Record finances in the page; the runway appears from the ledger.
    page.fill("#fin-cash", "1000000")
    page.fill("#fin-payroll", "100000")
    page.get_by_role("button", name="Record finances").click()
    page.wait_for_selector("#runway-months")
    assert re.match(r"[\d.]+ months", page.locator("#runway-months").inner_text())
    assert unlabelled(page) == [] and low_contrast(page) == []
    shot(page, "dashboard")


def test_phone_layout_and_keyboard(browser, server):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = ctx.new_page()
    try:
        sign_in(page, server)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"the create page scrolls sideways on a phone ({width}px)"
        # Keyboard: from the prompt, Tab reaches the Generate button without a mouse.
        page.focus("#prompt")
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement.id") == "generate":
                break
        assert page.evaluate("() => document.activeElement.id") == "generate"
        shot(page, "phone-create")
    finally:
        ctx.close()


def test_every_asset_is_served_locally(server):
    page = httpx.get(server["url"])
    html = page.text
    refs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert refs and all(r.startswith("/static/") or r.startswith("data:") for r in refs), refs
    for r in refs:
        if r.startswith("/static/"):
            assert httpx.get(server["base"] + r).status_code == 200, r
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_the_contrast_check_catches_low_contrast(browser):
    """The check the pages pass must be able to fail: grey on white and dark on a translucent dark layer."""
    page = browser.new_page()
    try:
        page.set_content('<body style="background:#fff"><p id="a" style="color:#aaa">light grey</p>'
                         '<p style="color:#595959">dark grey</p><h1 style="color:#888;font-size:32px">large</h1>'
                         '<div style="background:rgba(0,0,0,.8)"><span id="b" style="color:#333">dark on dark</span>'
                         '</div><p hidden style="color:#fff">hidden</p></body>')
        assert low_contrast(page) == ['p#a "light grey": 2.32:1', 'span#b "dark on dark": 1.00:1']
    finally:
        page.close()


def generate_and_read(page, server, prompt: str) -> dict:
    """Type `prompt`, press Generate, wait for the image (every control still labelled) and read its record."""
    import httpx

    page.fill("#prompt", prompt)
    page.get_by_role("button", name="Generate").click()
    page.wait_for_selector("#results figure img")
    assert unlabelled(page) == []
    image_id = page.locator("#results figure a").first.get_attribute("href").rsplit("/", 1)[1]
    return httpx.get(f"{server['base']}/api/images/{image_id}/info",
                     headers={"Authorization": f"Bearer {server['key']}"}, timeout=30).json()


def test_a_drawn_silhouette_steers_the_image(page, server, tmp_path):
    """The Create page's ControlNet panel: the built-in ControlNet, a control image previewed by the server,
    and a job that carries the unit (and says so in its infotext)."""
    from PIL import Image, ImageDraw

    drawn = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(drawn).ellipse((6, 6, 28, 28), fill="white")
    drawn.save(tmp_path / "silhouette.png")
    sign_in(page, server)
    page.select_option("#control-model", "solvent-tiny-silhouette")
    page.set_input_files("#control-file", str(tmp_path / "silhouette.png"))
    page.wait_for_function("() => { const i = document.getElementById('control-preview'); "
                           "return !i.hidden && i.src.startsWith('data:image/png;base64,'); }")
    page.select_option("#control-pre", "invert")
    info = generate_and_read(page, server, "a red circle on a blue background")
    assert info["params"]["controls"][0]["model"] == "solvent-tiny-silhouette"
    assert info["params"]["controls"][0]["preprocessor"] == "invert"


def test_a_silhouette_drawn_on_the_pad_and_an_image_prompt(page, server, tmp_path):
    """The Create page's drawing pad (white on black, drawn with the pointer) makes the control image; the image
    prompt panel takes a reference with its scale; the job carries both."""
    from PIL import Image

    Image.new("RGB", (48, 48), "orange").save(tmp_path / "ref.png")
    sign_in(page, server)
    page.select_option("#control-model", "solvent-tiny-silhouette")
    page.select_option("#control-mode", "prompt")
    page.get_by_role("button", name="Open the drawing pad").click()
    box = page.locator("#sketch").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    for fx, fy in ((0.5, 0.2), (0.5, 0.5), (0.2, 0.5), (0.2, 0.2)):
        page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=4)
    page.mouse.up()
    page.get_by_role("button", name="Fill shape").click()
    page.get_by_role("button", name="Use drawing").click()
    page.wait_for_function("() => !document.getElementById('control-preview').hidden")
    lit = page.evaluate("""() => { const c = document.getElementById('sketch').getContext('2d');
        const d = c.getImageData(0, 0, 64, 64).data; let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] > 128;
        return [n, c.getImageData(20, 20, 1, 1).data[0], c.getImageData(50, 50, 1, 1).data[0]]; }""")
    assert lit[0] > 300 and lit[1] == 255 and lit[2] == 0  # a filled square at the top left, black elsewhere
    page.select_option("#ip-model", "ip-tiny")
    page.set_input_files("#ip-file", str(tmp_path / "ref.png"))
    page.wait_for_selector("#ip-scale-0")
    page.fill("#ip-scale-0", "0.5")
    page.dispatch_event("#ip-scale-0", "change")
    info = generate_and_read(page, server, "a red square")
    unit = info["params"]["controls"][0]
    assert (unit["model"], unit["preprocessor"], unit["control_mode"]) == ("solvent-tiny-silhouette", "none", "prompt")
    assert info["params"]["ip_adapters"] == [{"model": "ip-tiny", "weight": 0.6, "scales": [0.5]}]


def test_a_flux_model_gets_its_sizes_samplers_and_few_step_defaults(page, server):
    sign_in(page, server)
    label = page.locator("#model option[value='flux1-schnell']").inner_text()
    assert "Flux.1" in label and "schnell: 4 steps" in label
    page.select_option("#model", "flux1-schnell")
    assert page.input_value("#steps") == "4" and page.input_value("#sampler") == "flow_euler"
    sizes = page.eval_on_selector_all("#size option", "os => os.map((o) => o.value)")
    assert sizes and all(int(v) % 16 == 0 for s in sizes for v in s.split("x"))
    usable = page.eval_on_selector_all("#sampler option", "os => os.filter((o) => !o.disabled).map((o) => o.value)")
    assert "flow_euler" in usable and "dpmpp_2m_karras" not in usable and "flow_heun" not in usable
    page.select_option("#size", sizes[0])
    page.fill("#prompt", "a kite over the sea")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function("() => document.querySelectorAll('#results img').length > 0", timeout=120_000)
    job = _last_job(server)
    assert job["state"] == "succeeded" and job["params"]["model"] == "flux1-schnell", job
    page.select_option("#model", "solvent-tiny")  # back to a UNet model: its samplers again
    usable = page.eval_on_selector_all("#sampler option", "os => os.filter((o) => !o.disabled).map((o) => o.value)")
    assert "dpmpp_2m_karras" in usable and "flow_euler" not in usable


def test_upscale_extend_and_erase_from_an_image_page(page, server):
    sign_in(page, server)
    record = generate_and_read(page, server, "a red circle on a blue background")
    page.goto(f"{server['url']}#/image/{record['id']}")
    page.wait_for_selector("#edit-upscale")
    page.wait_for_function("() => document.querySelectorAll('#up-name option').length > 2")  # the served upscalers
    assert unlabelled(page) == [] and low_contrast(page) == []

    def new_image(old: str) -> dict:
        page.wait_for_function("(old) => !location.hash.endsWith(old) && document.getElementById('params')",
                               arg=old, timeout=60_000)
        return api(server, "GET", f"/api/images/{page.url.rsplit('/', 1)[1]}/info").json()

    page.select_option("#up-name", "lanczos")
    page.select_option("#up-scale", "2")
    page.get_by_role("button", name="Upscale", exact=True).last.click()
    up = new_image(record["id"])
    assert (up["width"], up["height"]) == (128, 128) and up["mode"] == "upscale"

    page.get_by_role("tab", name="Extend").click()
    page.fill("#ext-right", "32")
    page.get_by_role("button", name="Extend", exact=True).last.click()
    wide = new_image(up["id"])
    assert (wide["width"], wide["height"]) == (160, 128) and wide["mode"] == "inpaint"

    page.get_by_role("tab", name="Erase").click()
    page.get_by_role("button", name="Erase", exact=True).last.click()  # nothing painted yet: said so
    page.wait_for_selector("#edit-error .alert")
    assert "Nothing to erase" in page.locator("#edit-error").inner_text()
    box = page.locator("#erase-mask").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5, steps=8)
    page.mouse.up()
    page.get_by_role("button", name="Erase", exact=True).last.click()
    erased = new_image(wide["id"])
    assert (erased["width"], erased["height"]) == (160, 128) and erased["mode"] == "inpaint"
    shot(page, "erased")
