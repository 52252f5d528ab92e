"""SD3.5 and Flux single files, as people download them, and a few-step SDXL-Turbo, through every API against a
live server with a real worker: the native API (priced by the steps that run), Stability's generate/sd3 with its
model names and image-to-image, AUTOMATIC1111's sd-models and txt2img (Forge's distilled CFG), OpenAI's client."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
import requests
from PIL import Image

from solvent.generation import parse_infotext, read_metadata
from tests.api.compat.test_clients import Live
from tests.flow_models import build_flux, build_sd3, write_flux_files, write_sd3_single
from tests.harness import wait_job
from tests.tiny_models import write_checkpoint


def _install(engine, tmp):
    """SD3.5 medium and Flux.1 schnell as people download them, and an SDXL-Turbo (tiny, random weights)."""
    files = tmp / "downloads"
    files.mkdir()
    write_sd3_single(build_sd3(v35=True), files / "sd3.5_medium.safetensors")
    # (4-step defaults keep the 1024² images Stability's API asks for quick on a CPU)
    engine.store.add(files / "sd3.5_medium.safetensors", model_id="sd3.5-medium", preset="sd3-turbo")
    paths = write_flux_files(build_flux(schnell=True), files / "flux", comfy=True)
    engine.store.add(paths.pop("path"), model_id="flux1-schnell", components=paths)
    write_checkpoint("sdxl", files / "sdxl-turbo.safetensors")
    engine.store.add(files / "sdxl-turbo.safetensors", prediction_type="epsilon")


class FlowLive(Live):
    def __init__(self, tmp):
        super().__init__(tmp, _install, stability_sd3_models={"sd3.5-medium": "sd3.5-medium"},
                         openai_models={"default": "solvent-tiny", "gpt-image-1": "flux1-schnell"})
        self.h = {"Authorization": f"Bearer {self.key}"}

    def job(self, body: dict) -> dict:
        r = httpx.post(f"{self.base}/api/jobs", headers=self.h, json=body)
        assert r.status_code == 201, r.text
        job = wait_job(self.base, self.key, r.json()["id"])
        assert job["state"] == "succeeded", job
        return job

    def infotext(self, url: str) -> dict:
        text, _ = read_metadata(httpx.get(f"{self.base}{url}" if url.startswith("/") else url, headers=self.h).content)
        return parse_infotext(text)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = FlowLive(tmp_path_factory.mktemp("flow"))
    yield server
    server.close()


def test_models_list_families_presets_and_samplers(live):
    models = {m["id"]: m for m in httpx.get(f"{live.base}/api/models", headers=live.h).json()}
    assert models["sd3.5-medium"]["family"] == "sd3" and models["flux1-schnell"]["family"] == "flux"
    assert (models["flux1-schnell"]["preset"], models["flux1-schnell"]["default_steps"]) == ("schnell", 4)
    assert (models["sdxl-turbo"]["preset"], models["sdxl-turbo"]["default_steps"]) == ("turbo", 1)
    assert "flow_euler" in models["sd3.5-medium"]["samplers"] and "euler_a" not in models["sd3.5-medium"]["samplers"]
    assert "flow_heun" not in models["flux1-schnell"]["samplers"]
    assert all(s["width"] % 16 == 0 and s["height"] % 16 == 0 for s in models["flux1-schnell"]["sizes"])
    assert models["flux1-schnell"]["controlnets"] == [] and models["flux1-schnell"]["loras"] == []


def test_a_turbo_request_with_no_settings_runs_one_step_and_costs_one(live):
    quote = lambda body: httpx.post(f"{live.base}/api/quote", headers=live.h, json=body).json()["price_mc"]  # noqa: E731
    body = {"model": "sdxl-turbo", "prompt": "a cat", "width": 512, "height": 512}
    one, thirty = quote(body), quote({**body, "steps": 30})
    assert thirty == 30 * one or abs(thirty - 30 * one) < 30  # linear in the steps (rounded up per image)
    job = live.job({**body, "seed": 3})
    info = live.infotext(job["images"][0]["url"])
    assert info["Steps"] == "1" and info["CFG scale"] == "0" and info["Sampler"] == "Euler a SGM Uniform"
    assert job["price_mc"] == one
    flux = quote({"model": "flux1-schnell", "prompt": "a cat"})
    assert flux < quote({"model": "flux1-schnell", "prompt": "a cat", "steps": 28})


def test_stability_generate_sd3_with_model_names_and_image_to_image(live):
    h = {**live.h, "Accept": "application/json"}
    url = f"{live.base}/v2beta/stable-image/generate/sd3"
    r = requests.post(url, headers=h, files={"none": ""},
                      data={"prompt": "a lighthouse", "model": "sd3.5-medium", "aspect_ratio": "1:1", "seed": 9,
                            "cfg_scale": 5})
    assert r.status_code == 200, r.text
    out = r.json()
    img = Image.open(io.BytesIO(base64.b64decode(out["image"])))
    assert out["finish_reason"] == "SUCCESS" and out["seed"] == 9 and img.size == (1024, 1024)
    buf = io.BytesIO()
    Image.new("RGB", (512, 256), (10, 120, 200)).save(buf, "PNG")
    r = requests.post(url, headers=h, files={"image": ("in.png", buf.getvalue(), "image/png")},
                      data={"prompt": "a lighthouse at night", "model": "sd3.5-medium", "mode": "image-to-image",
                            "strength": 0.6})
    assert r.status_code == 200, r.text
    w, hgt = Image.open(io.BytesIO(base64.b64decode(r.json()["image"]))).size
    assert abs(w / hgt - 2) < 0.05 and w % 16 == hgt % 16 == 0  # the input's 2:1 aspect, in the family's multiples
    for data, field in (({"model": "sd4-huge"}, "model"), ({"mode": "image-to-image"}, "image"),
                        ({"cfg_scale": 40}, "cfg_scale"), ({"strength": "lots"}, "strength")):
        r = requests.post(url, headers=h, files={"none": ""}, data={"prompt": "x", **data})
        assert r.status_code == 400 and field in r.text, (data, r.text)
    r = requests.post(url, headers=h, files={"image": ("x.png", b"not a picture", "image/png")},
                      data={"prompt": "x", "mode": "image-to-image", "strength": 0.5})
    assert r.status_code == 400 and "image" in r.text
    r = requests.post(url, headers=h, files={"image": ("x.png", b"\0" * (40 << 20), "image/png")},
                      data={"prompt": "x", "mode": "image-to-image", "strength": 0.5})
    assert r.status_code == 400 and "image" in r.text  # over SOLVENT_MAX_INPUT_BYTES (32 MiB) for one image
    r = requests.post(url, headers=h, files={"image": ("x.png", b"\0" * (50 << 20), "image/png")},
                      data={"prompt": "x", "mode": "image-to-image", "strength": 0.5})
    assert r.status_code == 413  # over SOLVENT_MAX_REQUEST_BYTES (48 MiB) for the body
    from solvent.accounts import create_key

    reader = create_key(live.services.db, live.org, "reader", ("read",))[1]
    r = requests.post(url, headers={"Authorization": f"Bearer {reader}", "Accept": "application/json"},
                      files={"none": ""}, data={"prompt": "x", "model": "sd3.5-medium"})
    assert r.status_code == 403, r.text


def test_a1111_lists_and_runs_flux_with_its_defaults(live):
    base = f"{live.base}/sdapi/v1"
    names = [m["model_name"] for m in httpx.get(f"{base}/sd-models", headers=live.h).json()]
    assert {"sd3.5-medium", "flux1-schnell", "sdxl-turbo"} <= set(names)
    r = httpx.post(f"{base}/txt2img", headers=live.h, timeout=120, json={
        "prompt": "a fox", "sampler_name": "Euler", "width": 512, "height": 512, "seed": 4,
        "override_settings": {"sd_model_checkpoint": "flux1-schnell"}})
    assert r.status_code == 200, r.text
    info = parse_infotext(__import__("json").loads(r.json()["info"])["infotexts"][0])
    assert info["Steps"] == "4" and info["Sampler"] == "Euler (flow)" and info["Model"] == "flux1-schnell"
    r = httpx.post(f"{base}/txt2img", headers=live.h, timeout=120, json={
        "prompt": "a fox", "sampler_name": "DPM++ 2M Karras", "width": 512, "height": 512,
        "override_settings": {"sd_model_checkpoint": "flux1-schnell"}})
    assert r.status_code == 422 and "flow_euler" in r.text
    turbo = {"prompt": "a fox", "width": 512, "height": 512, "override_settings": {"sd_model_checkpoint": "sdxl-turbo"}}
    r = httpx.post(f"{base}/txt2img", headers=live.h, timeout=120,
                   json={**turbo, "sampler_name": "Euler a", "scheduler": "SGM Uniform"})  # A1111 1.9+'s schedule
    info = parse_infotext(__import__("json").loads(r.json()["info"])["infotexts"][0])
    assert info["Sampler"] == "Euler a SGM Uniform" and info["Steps"] == "1"
    r = httpx.post(f"{base}/txt2img", headers=live.h, json={**turbo, "sampler_name": "Euler", "scheduler": "Beta"})
    assert r.status_code == 422 and "scheduler" in r.text


def test_openai_model_name_maps_to_flux(live):
    client = openai.OpenAI(base_url=f"{live.base}/v1", api_key=live.key, max_retries=0, timeout=120)
    out = client.images.generate(model="gpt-image-1", prompt="a red kite", size="1024x1024",
                                 response_format="b64_json")
    assert Image.open(io.BytesIO(base64.b64decode(out.data[0].b64_json))).size == (1024, 1024)
    jobs = httpx.get(f"{live.base}/api/jobs", params={"limit": 5}, headers=live.h).json()["jobs"]
    assert jobs[0]["params"]["model"] == "flux1-schnell"
