"""Upscaling through every surface against a live server with a real worker and an ESRGAN file as a user downloads
it (tiny, in its real key layout): the native upscale job (priced by output pixels), A1111's extras and upscaler
lists through `webuiapi`, hires fix through A1111's txt2img, Stability's v1 upscale and v2beta fast, conservative
and creative (asynchronous, with `GET /v2beta/results/{id}`)."""

from __future__ import annotations

import base64
import io
import time

import httpx
import numpy as np
import pytest
import requests
from PIL import Image

from solvent.generation import parse_infotext, read_metadata
from tests.api.compat.test_clients import Live, webui
from tests.harness import wait_job
from tests.upscaler_files import esrgan, write


def _install(engine, tmp):
    engine.store.add(write(esrgan(), tmp / "4x-ultratest.safetensors"), model_id="4x-ultratest")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = Live(tmp_path_factory.mktemp("upscale"), _install)
    server.h = {"Authorization": f"Bearer {server.key}"}
    yield server
    server.close()


def _picture(w=48, h=32, seed=0) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype("uint8"))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _b64(img: Image.Image) -> str:
    return base64.b64encode(_png(img)).decode()


def _open(data: bytes | str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data) if isinstance(data, str) else data))


def _job(live, body: dict) -> dict:
    r = httpx.post(f"{live.base}/api/upscale", headers=live.h, json=body)
    assert r.status_code == 201, r.text
    job = wait_job(live.base, live.key, r.json()["id"])
    assert job["state"] == "succeeded", job
    return job


def test_a_native_upscale_job_with_the_default_upscaler_is_priced_by_output_pixels(live):
    job = _job(live, {"image": _b64(_picture())})
    assert job["mode"] == "upscale" and job["model"] == "4x-ultratest"  # `auto`: the installed upscaler
    image = job["images"][0]
    assert (image["width"], image["height"]) == (192, 128)  # its own ×4
    assert job["price_mc"] == -(-1000 * 192 * 128 // (1024 * 1024))  # 1 credit per output megapixel
    assert job["usage"]["pixels"] == 192 * 128 and job["usage"]["model_id"] == "4x-ultratest"
    text, meta = read_metadata(httpx.get(f"{live.base}{image['url']}", headers=live.h).content)
    info = parse_infotext(text)
    assert info["Postprocess upscaler"] == "4x-ultratest" and info["Postprocess upscale from"] == "48x32"
    assert meta["params"]["task"] == "upscale" and meta["params"]["passes"] == 1


def test_lanczos_to_an_exact_size_equals_pil(live):
    pic = _picture(40, 30, seed=3)
    job = _job(live, {"image": _b64(pic), "upscaler": "lanczos", "width": 100, "height": 75})
    out = _open(httpx.get(f"{live.base}{job['images'][0]['url']}", headers=live.h).content).convert("RGB")
    assert np.abs(np.asarray(out).astype(int) - np.asarray(pic.resize((100, 75), Image.Resampling.LANCZOS))
                  .astype(int)).max() == 0


def test_a_refined_upscale_runs_the_model_with_the_prompt(live):
    job = _job(live, {"image": _b64(_picture(64, 64)), "scale": 2, "model": "solvent-tiny",
                      "prompt": "a red circle", "strength": 0.3, "steps": 6, "seed": 4})
    assert job["model"] == "solvent-tiny" and (job["images"][0]["width"], job["images"][0]["height"]) == (128, 128)
    assert job["params"]["refine"] is True and job["usage"]["steps_run"] >= 1


@pytest.mark.parametrize("body,status,field", [
    ({"upscaler": "8x-missing"}, 404, "upscaler"),
    ({"scale": 400}, 422, "scale"),
    ({"width": 16384, "height": 16384}, 422, "width"),
    ({"image": base64.b64encode(b"not an image").decode()}, 400, "image"),
    ({"model": "solvent-tiny", "prompt": "x", "upscaler": "lanczos", "width": 4096, "height": 4096}, 422, "width"),
])
def test_bad_upscale_requests_name_the_field(live, body, status, field):
    r = httpx.post(f"{live.base}/api/upscale", headers=live.h, json={"image": _b64(_picture()), **body})
    assert r.status_code == status, r.text
    assert field in r.text


def test_a1111_extras_and_upscaler_lists_through_webuiapi(live):
    api = webui(live)
    names = [u["name"] for u in requests.get(f"{live.base}/sdapi/v1/upscalers", headers=live.h).json()]
    assert names[:3] == ["Lanczos", "Nearest", "None"] and "4x-ultratest" in names
    modes = [m["name"] for m in requests.get(f"{live.base}/sdapi/v1/latent-upscale-modes", headers=live.h).json()]
    assert "Latent" in modes and "Latent (nearest-exact)" in modes
    real = requests.get(f"{live.base}/sdapi/v1/realesrgan-models", headers=live.h).json()
    # the ESRGAN file, and the built-in model (Real-ESRGAN's compact architecture)
    assert [m["name"] for m in real] == ["4x-ultratest", "solvent-tiny-upscale"] and real[0]["scale"] == 4
    out = api.extra_single_image(image=_picture(), upscaler_1="4x-ultratest", upscaling_resize=2)
    assert out.image.size == (96, 64) and "4x-ultratest" in out.info
    # resize_mode 1: to an exact size, cropped to fit (A1111's "crop to fit")
    out = api.extra_single_image(image=_picture(), resize_mode=1, upscaling_resize_w=100, upscaling_resize_h=100,
                                 upscaler_1="Lanczos")
    assert out.image.size == (100, 100)
    batch = api.extra_batch_images(images=[_picture(seed=1), _picture(seed=2)], upscaler_1="None",
                                   upscaling_resize=3)
    assert [im.size for im in batch.images] == [(144, 96), (144, 96)]
    r = requests.post(f"{live.base}/sdapi/v1/extra-single-image", headers=live.h,
                      json={"image": _b64(_picture()), "upscaler_1": "R-ESRGAN 9x+"})
    assert r.status_code == 404 and "upscaler_1" in r.json()["detail"]
    r = requests.post(f"{live.base}/sdapi/v1/extra-single-image", headers=live.h,
                      json={"image": _b64(_picture()), "gfpgan_visibility": 0.5})
    assert r.status_code in (400, 422) and "gfpgan_visibility" in r.text


def test_hires_fix_through_a1111_txt2img(live):
    api = webui(live)
    # (a fresh alwayson_scripts each call: webuiapi's default is one dict an earlier ControlNet call may have filled)
    r = api.txt2img(prompt="a red circle", width=64, height=64, steps=4, seed=5, enable_hr=True, hr_scale=2,
                    hr_upscaler="Latent", denoising_strength=0.5, hr_second_pass_steps=4, alwayson_scripts={})
    assert r.image.size == (128, 128)
    info = parse_infotext(r.info["infotexts"][0])
    assert info["Hires upscale"] == "2" and info["Hires upscaler"] == "Latent" and info["Size"] == "64x64"
    r = api.txt2img(prompt="a red circle", width=64, height=64, steps=4, enable_hr=True, hr_resize_x=96,
                    hr_resize_y=64, hr_upscaler="4x-ultratest", denoising_strength=0.4, alwayson_scripts={})
    assert r.image.size == (96, 64)
    bad = requests.post(f"{live.base}/sdapi/v1/txt2img", headers=live.h, json={
        "prompt": "x", "width": 64, "height": 64, "enable_hr": True, "hr_upscaler": "SwinIR 9x"})
    assert bad.status_code == 404 and "hr_upscaler" in bad.text


def test_native_hires_fields_and_their_price(live):
    body = {"prompt": "a red circle", "width": 64, "height": 64, "steps": 4}
    plain = httpx.post(f"{live.base}/api/quote", headers=live.h, json=body).json()["price_mc"]
    hires = {**body, "hires": {"scale": 2, "upscaler": "Lanczos", "denoising": 0.5}}
    priced = httpx.post(f"{live.base}/api/quote", headers=live.h, json=hires).json()["price_mc"]
    assert priced > plain  # the second pass (128², 2 steps) is paid for too
    r = httpx.post(f"{live.base}/api/jobs", headers=live.h, json=hires)
    assert r.status_code == 201, r.text
    job = wait_job(live.base, live.key, r.json()["id"])
    assert job["state"] == "succeeded" and job["images"][0]["width"] == 128, job


def _stability(live, path, accept="application/json", key=None, **kw):
    auth = {"Authorization": f"Bearer {key}"} if key else live.h
    return requests.post(f"{live.base}{path}", headers={**auth, "Accept": accept}, timeout=120, **kw)


def test_stability_v1_upscale_with_the_esrgan_engine_id(live):
    files = {"image": ("i.png", _png(_picture()), "image/png")}
    r = _stability(live, "/v1/generation/esrgan-v1-x2plus/image-to-image/upscale", files=files)
    assert r.status_code == 200, r.text
    art = r.json()["artifacts"][0]
    assert art["finishReason"] == "SUCCESS" and _open(art["base64"]).size == (96, 64)  # ×2 by default
    r = _stability(live, "/v1/generation/esrgan-v1-x2plus/image-to-image/upscale", accept="image/png",
                   files=files, data={"width": "120"})
    assert r.status_code == 200 and _open(r.content).size == (120, 80)
    r = _stability(live, "/v1/generation/4x-ultratest/image-to-image/upscale", files=files)
    assert r.status_code == 200 and _open(r.json()["artifacts"][0]["base64"]).size == (192, 128)
    r = _stability(live, "/v1/generation/esrgan-v1-x2plus/image-to-image/upscale", files=files,
                   data={"width": "96", "height": "64"})
    assert r.status_code == 400 and set(r.json()) == {"id", "name", "message"}
    r = _stability(live, "/v1/generation/solvent-tiny/image-to-image/upscale", files=files)
    assert r.status_code == 404 and r.json()["name"] == "not_found"


def test_stability_v2beta_fast_conservative_and_creative(live):
    files = {"image": ("i.png", _png(_picture(32, 32)), "image/png")}
    _, key = live.new_org("professional", credits=1000)  # its plan allows the 4 MP conservative makes
    h = {"Authorization": f"Bearer {key}"}
    r = _stability(live, "/v2beta/stable-image/upscale/fast", accept="image/*", files=files,
                   data={"output_format": "webp"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/webp" and _open(r.content).size == (128, 128)
    r = _stability(live, "/v2beta/stable-image/upscale/conservative", files=files, key=key,
                   data={"prompt": "a red circle", "creativity": "0.3", "seed": "7"})
    assert r.status_code == 200, r.text
    assert _open(r.json()["image"]).size == (2048, 2048) and r.json()["seed"] == 7  # about 4 MP
    r = _stability(live, "/v2beta/stable-image/upscale/conservative", files=files, data={"creativity": "0.3"})
    assert r.status_code == 400 and "prompt" in r.json()["errors"][0]
    r = _stability(live, "/v2beta/stable-image/upscale/creative", files=files, key=key,
                   data={"prompt": "a red circle", "seed": "3"})
    assert r.status_code == 200, r.text
    gid = r.json()["id"]
    deadline, got = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        got = requests.get(f"{live.base}/v2beta/results/{gid}", headers={**h, "Accept": "application/json"})
        if got.status_code != 202:
            break
        assert got.json() == {"id": gid, "status": "in-progress"}
        time.sleep(0.2)
    assert got.status_code == 200, got.text
    assert got.json()["finish_reason"] == "SUCCESS" and _open(got.json()["image"]).size == (2048, 2048)
    raw = requests.get(f"{live.base}/v2beta/results/{gid}", headers={**h, "Accept": "image/*"})
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/png"
    _, stranger = live.new_org("payg", credits=10)
    r = requests.get(f"{live.base}/v2beta/results/{gid}", headers={"Authorization": f"Bearer {stranger}"})
    assert r.status_code == 404
    r = requests.get(f"{live.base}/v2beta/results/nope", headers=live.h)
    assert r.status_code == 404 and set(r.json()) == {"id", "name", "errors"}
    from datetime import timedelta

    from solvent.storage.models import Job

    with live.services.db.session() as s:  # a day and a bit later
        job = s.get(Job, gid)
        job.finished_at = job.finished_at - timedelta(hours=25)
    r = requests.get(f"{live.base}/v2beta/results/{gid}", headers=h)
    assert r.status_code == 404 and "expired" in r.json()["errors"][0]


def test_conservative_refuses_an_image_already_at_its_size(live):
    big = {"image": ("i.png", _png(Image.new("RGB", (2100, 2100), (9, 9, 9))), "image/png")}
    r = _stability(live, "/v2beta/stable-image/upscale/conservative", files=big, data={"prompt": "a red circle"})
    assert r.status_code == 400 and "megapixels" in r.json()["errors"][0] and r.json()["name"] == "bad_request"


def test_upscale_and_edit_routes_as_a_stranger(live):
    from solvent.accounts import create_key

    reader = create_key(live.services.db, live.org, "reader", ("read",))[1]
    h = {"Authorization": f"Bearer {reader}"}
    body = {"image": _b64(_picture())}
    for path, extra in (("/api/upscale", {}), ("/api/outpaint", {"right": 8}), ("/api/erase", {})):
        r = httpx.post(f"{live.base}{path}", headers=h, json={**body, **extra})
        assert r.status_code == 403 and r.json()["error"]["field"] == "scope", (path, r.text)
    assert httpx.get(f"{live.base}/api/webhooks/secret", headers=h).status_code == 403
    r = httpx.post(f"{live.base}/api/upscale", headers={**live.h, "Content-Type": "application/json"},
                   content=b"{not json")
    assert r.status_code == 400, r.text
    huge = "A" * (live.services.settings.max_request_bytes + 1)
    r = httpx.post(f"{live.base}/api/upscale", headers=live.h, json={"image": huge})
    assert r.status_code == 413, r.text
    # another organisation's upscale job is not there for it
    job = _job(live, {"image": _b64(_picture()), "upscaler": "lanczos"})
    _, stranger = live.new_org("payg", credits=10)
    r = httpx.get(f"{live.base}/api/jobs/{job['id']}", headers={"Authorization": f"Bearer {stranger}"})
    assert r.status_code == 404
