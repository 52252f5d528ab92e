"""Segmenters through every surface, against a live server whose worker has a tiny CLIPSeg installed: native
background removal and `mask_prompt` jobs, `GET /api/segmenters`, and Stability v2beta's `edit/remove-background`,
`edit/search-and-replace` and `edit/search-and-recolor` (read as Stability's samples read them)."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
import requests
import torch
from PIL import Image

from tests.api.compat.test_clients import Live
from tests.engine.test_segment import PROMPT, picture
from tests.harness import wait_job
from tests.segmenter_files import write_segmenter


def _b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _install(engine, tmp):
    write_segmenter(tmp / "clipseg", picture(), PROMPT)
    engine.store.add(tmp / "clipseg", model_id="tiny-clipseg")
    blind = write_segmenter(tmp / "blind", picture(), PROMPT)
    last = blind.decoder.transposed_convolution
    with torch.no_grad():  # a segmenter that finds nothing anywhere
        (last[-1] if isinstance(last, torch.nn.Sequential) else last).bias -= 100
    blind.save_pretrained(str(tmp / "blind"))
    engine.store.add(tmp / "blind", model_id="zz-blind")
    live_engine.append(engine)


live_engine: list = []


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = Live(tmp_path_factory.mktemp("segment"), install=_install, subject_prompt=PROMPT)
    server.h = {"Authorization": f"Bearer {server.key}"}
    yield server
    server.close()
    live_engine.clear()


def _image(live, job) -> Image.Image:
    data = httpx.get(f"{live.base}{job['images'][0]['url']}", headers=live.h).content
    return Image.open(io.BytesIO(data))


def test_native_background_removal(live):
    assert httpx.get(f"{live.base}/api/segmenters", headers=live.h).json() == [
        {"id": "tiny-clipseg", "architecture": "clipseg", "license": None},
        {"id": "zz-blind", "architecture": "clipseg", "license": None}]
    r = httpx.post(f"{live.base}/api/remove-background", headers=live.h, json={"image": _b64(picture())})
    assert r.status_code == 201, r.text
    job = wait_job(live.base, live.key, r.json()["id"])
    assert job["state"] == "succeeded" and job["mode"] == "segment", job
    assert job["params"]["prompt"] == PROMPT  # SOLVENT_SUBJECT_PROMPT when the request names nothing
    cut = _image(live, job)
    assert cut.mode == "RGBA" and cut.size == (64, 64)
    want = np.asarray(live_engine[0].segment(picture(), PROMPT))
    assert np.array_equal(np.asarray(cut)[..., 3], want)
    r = httpx.post(f"{live.base}/api/remove-background", headers=live.h,
                   json={"image": _b64(picture()), "segmenter": "nope"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "segmenter"
    r = httpx.post(f"{live.base}/api/remove-background", headers=live.h,
                   json={"image": _b64(picture()), "output_format": "jpeg"})
    assert r.status_code == 422  # a cut-out needs an alpha channel


def test_native_mask_prompt_jobs(live):
    body = {"prompt": "a blue square", "init_image": _b64(picture()), "mask_prompt": PROMPT, "mask_grow": 2,
            "strength": 1.0, "steps": 4, "seed": 2}
    r = httpx.post(f"{live.base}/api/jobs", headers=live.h, json=body)
    assert r.status_code == 201, r.text
    job = wait_job(live.base, live.key, r.json()["id"])
    assert job["state"] == "succeeded" and job["mode"] == "inpaint", job
    assert job["params"]["mask_prompt"] == PROMPT and job["params"]["segmenter"] == "tiny-clipseg"
    for extra, field, status in (({"mask": _b64(picture().convert("L"))}, "mask_prompt", 422),
                                 ({"segmenter": "nope"}, "segmenter", 404),
                                 ({"init_image": None}, "mask_prompt", 422)):
        r = httpx.post(f"{live.base}/api/jobs", headers=live.h, json={**body, **extra})
        assert r.status_code == status and r.json()["error"]["field"] == field, r.text


def _edit(live, service: str, data: dict, image: Image.Image | None = None, accept="image/*"):
    files = {"image": ("i.png", base64.b64decode(_b64(image or picture())))}
    return requests.post(f"{live.base}/v2beta/stable-image/edit/{service}", timeout=120, files=files, data=data,
                         headers={**live.h, "Accept": accept})


def test_stability_remove_background_and_search_services(live):
    r = _edit(live, "remove-background", {})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    cut = Image.open(io.BytesIO(r.content))
    assert cut.mode == "RGBA" and r.headers["finish-reason"] == "SUCCESS"
    r = _edit(live, "remove-background", {"output_format": "webp"}, accept="application/json")
    assert r.status_code == 200, r.text
    webp = Image.open(io.BytesIO(base64.b64decode(r.json()["image"])))
    assert webp.format == "WEBP" and webp.mode == "RGBA"  # the cut-out keeps its alpha in WEBP too
    r = _edit(live, "remove-background", {"output_format": "jpeg"}, accept="application/json")
    assert r.status_code == 400 and "output_format" in r.json()["errors"][0]

    r = _edit(live, "search-and-replace", {"prompt": "a blue square", "search_prompt": PROMPT, "seed": "3"},
              accept="application/json")
    assert r.status_code == 200, r.text
    assert r.json()["seed"] == 3
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(r.json()["image"]))).convert("RGB")).astype(int)
    assert out.shape == (64, 64, 3) and np.abs(out - np.asarray(picture()).astype(int)).max() > 0
    r = _edit(live, "search-and-recolor", {"prompt": "blue", "select_prompt": PROMPT}, accept="application/json")
    assert r.status_code == 200, r.text
    r = _edit(live, "search-and-replace", {"prompt": "a cat"}, accept="application/json")
    assert r.status_code == 400 and "search_prompt" in r.json()["errors"][0]
    r = _edit(live, "search-and-recolor", {"select_prompt": PROMPT}, accept="application/json")
    assert r.status_code == 400 and "prompt" in r.json()["errors"][0]
    r = _edit(live, "search-and-replace", {"prompt": "a cat", "search_prompt": PROMPT, "grow_mask": "50"},
              accept="application/json")
    assert r.status_code == 400 and "grow_mask" in r.json()["errors"][0]


def test_what_a_segmenter_finds_nowhere_fails_the_job_naming_it(live):
    body = {"prompt": "a cat", "init_image": _b64(picture()), "mask_prompt": PROMPT, "segmenter": "zz-blind",
            "steps": 2}
    r = httpx.post(f"{live.base}/api/jobs", headers=live.h, json=body)
    assert r.status_code == 201, r.text
    job = wait_job(live.base, live.key, r.json()["id"])
    assert job["state"] == "failed" and job["error"]["code"] == "validation_error", job
    assert "was not found" in job["error"]["message"] and job["attempts"] == 1  # not retried: the input is wrong
