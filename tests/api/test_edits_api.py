"""Outpainting and erasing: the canvas and mask arithmetic (the feathered seam, the fill from the surroundings), and
the native routes and Stability's v2beta edit services against a live server with a real worker."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
import requests
from PIL import Image, ImageDraw

from solvent.errors import ValidationFailed
from solvent.generation.edits import fill_masked, grow_mask, outpaint_canvas
from tests.api.compat.test_clients import Live
from tests.harness import wait_job


def _picture(w=64, h=48, seed=0) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype("uint8"))


def _b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_the_outpaint_canvas_keeps_the_image_and_feathers_the_seam():
    img = _picture(60, 40)
    canvas, mask = outpaint_canvas(img, left=10, right=15, down=7, feather=8)
    assert canvas.size == mask.size == (88, 48)  # the grown sides rounded up to multiples of 8
    assert np.array_equal(np.asarray(canvas)[0:40, 10:70], np.asarray(img))
    m = np.asarray(mask).astype(int)
    assert (m[:, :10] == 255).all() and (m[40:, :] == 255).all() and (m[:, 70:] == 255).all()
    assert m[20, 10] == 255 and 0 < m[20, 14] < 255 and m[20, 18] == 0  # the ramp into the image, then kept
    assert (m[10:30, 30:50] == 0).all()
    with pytest.raises(ValidationFailed) as e:
        outpaint_canvas(img)
    assert e.value.field == "left"
    with pytest.raises(ValidationFailed) as e:
        outpaint_canvas(img, up=5000)
    assert e.value.field == "up"


def test_erasing_fills_the_mask_from_its_surroundings():
    img = Image.new("RGB", (64, 64), (30, 160, 40))
    ImageDraw.Draw(img).ellipse((20, 20, 44, 44), fill=(250, 0, 0))  # the object to erase
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 48, 48), fill=255)
    out = np.asarray(fill_masked(img, mask)).astype(int)
    assert np.abs(out - np.array([30, 160, 40])).max() == 0  # only the green around it is left
    grown = np.asarray(grow_mask(mask, 6))
    assert grown[32, 12] > 0 and grown[32, 4] == 0  # grown by about 6 px, softly
    with pytest.raises(ValidationFailed):
        fill_masked(img, Image.new("L", (64, 64), 255))


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = Live(tmp_path_factory.mktemp("edits"))
    server.h = {"Authorization": f"Bearer {server.key}"}
    yield server
    server.close()


def _done(live, path: str, body: dict) -> tuple[dict, Image.Image]:
    r = httpx.post(f"{live.base}{path}", headers=live.h, json=body)
    assert r.status_code == 201, r.text
    job = wait_job(live.base, live.key, r.json()["id"])
    assert job["state"] == "succeeded", job
    data = httpx.get(f"{live.base}{job['images'][0]['url']}", headers=live.h).content
    return job, Image.open(io.BytesIO(data)).convert("RGB")


def test_native_outpaint_keeps_the_image_past_the_seam(live):
    img = _picture()
    job, out = _done(live, "/api/outpaint", {"image": _b64(img), "right": 32, "up": 16, "feather": 8,
                                             "prompt": "a red circle", "steps": 6, "seed": 3})
    assert job["mode"] == "inpaint" and out.size == (96, 64)
    kept = np.asarray(out)[24:64, 0:56].astype(int)  # the image, below and left of the 8-px seams
    assert np.abs(kept - np.asarray(img)[8:, :56].astype(int)).max() == 0
    canvas, _ = outpaint_canvas(img, right=32, up=16, feather=8)
    new = (np.asarray(out)[:, 64:].astype(int), np.asarray(canvas)[:, 64:].astype(int))
    assert np.abs(new[0] - new[1]).mean() > 1  # the new part was painted, not left as the stretched edges


def test_native_erase_repaints_only_the_mask(live):
    img = _picture(64, 64, seed=2)
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((20, 20, 40, 40), fill=255)
    job, out = _done(live, "/api/erase", {"image": _b64(img), "mask": _b64(mask), "grow_mask": 4, "steps": 6,
                                          "seed": 1})
    assert out.size == (64, 64)
    far = np.asarray(out)[50:, :].astype(int)
    assert np.abs(far - np.asarray(img)[50:, :].astype(int)).max() == 0
    assert np.abs(np.asarray(out)[28:34, 28:34].astype(int) - np.asarray(img)[28:34, 28:34].astype(int)).max() > 0
    r = httpx.post(f"{live.base}/api/erase", headers=live.h, json={"image": _b64(img)})
    assert r.status_code == 422 and r.json()["error"]["field"] == "mask"


def _edit(live, service: str, files: dict, data: dict | None = None):
    return requests.post(f"{live.base}/v2beta/stable-image/edit/{service}", timeout=120, files=files,
                         data=data or {}, headers={**live.h, "Accept": "application/json"})


def test_stability_edit_services(live):
    img = _picture(64, 64, seed=4)
    png = base64.b64decode(_b64(img))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    mpng = base64.b64decode(_b64(mask))
    r = _edit(live, "inpaint", {"image": ("i.png", png), "mask": ("m.png", mpng)}, {"prompt": "a red circle",
                                                                                    "seed": "5"})
    assert r.status_code == 200, r.text
    assert r.json()["seed"] == 5 and Image.open(io.BytesIO(base64.b64decode(r.json()["image"]))).size == (64, 64)
    r = _edit(live, "outpaint", {"image": ("i.png", png)}, {"left": "32", "output_format": "webp"})
    assert r.status_code == 200, r.text
    assert Image.open(io.BytesIO(base64.b64decode(r.json()["image"]))).size == (96, 64)
    rgba = img.convert("RGBA")
    rgba.putalpha(Image.eval(mask, lambda v: 255 - v))  # transparent = erase
    r = _edit(live, "erase", {"image": ("i.png", base64.b64decode(_b64(rgba)))})
    assert r.status_code == 200, r.text
    r = _edit(live, "inpaint", {"image": ("i.png", png), "mask": ("m.png", mpng)})
    assert r.status_code == 400 and "prompt" in r.json()["errors"][0]
    r = _edit(live, "outpaint", {"image": ("i.png", png)})
    assert r.status_code == 400 and "left" in r.json()["errors"][0]
    r = _edit(live, "remove-background", {"image": ("i.png", png)})
    assert r.status_code == 404 and "segmentation model" in r.json()["errors"][0]
    r = _edit(live, "search-and-replace", {"image": ("i.png", png)}, {"prompt": "a cat", "search_prompt": "dog"})
    assert r.status_code == 404 and "segmentation model" in r.json()["errors"][0]
