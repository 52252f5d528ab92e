"""SD3.5 and Flux single files, as people download them, and a few-step SDXL-Turbo, through every API against a
live server with a real worker: the native API (priced by the steps that run), Stability's generate/sd3 with its
model names and image-to-image, AUTOMATIC1111's sd-models and txt2img (Forge's distilled CFG), OpenAI's client."""

from __future__ import annotations

import base64
import io
import threading

import httpx
import openai
import pytest
import requests
from PIL import Image

from solvent.accounts import create_key, create_org
from solvent.billing import set_plan
from solvent.config import Settings
from solvent.generation import parse_infotext, read_metadata
from solvent.jobs.registry import create_worker
from solvent.root import build_app, build_engine
from solvent.workers import WorkerLoop, declaration
from solvent.workers.local import LocalBackend
from tests.flow_models import build_flux, build_sd3, write_flux_files, write_sd3_single
from tests.harness import ThreadServer, sqlite_services
from tests.tiny_models import write_checkpoint


class FlowLive:
    def __init__(self, tmp):
        self.services = sqlite_services(
            tmp, stability_sd3_models={"sd3.5-medium": "sd3.5-medium"},
            openai_models={"default": "solvent-tiny", "gpt-image-1": "flux1-schnell"})
        set_plan(self.services.db, "payg", concurrent_jobs=8, rpm=1000, max_steps=150)
        self.http = ThreadServer(build_app(self.services))
        self.base = self.http.base
        engine = build_engine(Settings(home=tmp / "engine"))
        files = tmp / "downloads"
        files.mkdir()
        write_sd3_single(build_sd3(v35=True), files / "sd3.5_medium.safetensors")
        # (4-step defaults keep the 1024² images Stability's API asks for quick on a CPU)
        engine.store.add(files / "sd3.5_medium.safetensors", model_id="sd3.5-medium", preset="sd3-turbo")
        paths = write_flux_files(build_flux(schnell=True), files / "flux", comfy=True)
        engine.store.add(paths.pop("path"), model_id="flux1-schnell", components=paths)
        write_checkpoint("sdxl", files / "sdxl-turbo.safetensors")
        engine.store.add(files / "sdxl-turbo.safetensors", prediction_type="epsilon")
        w, _ = create_worker(self.services.db, name="w")
        self.loop = WorkerLoop(engine, LocalBackend(self.services, w.id), declaration(engine), poll=0.05)
        self.worker = threading.Thread(target=self.loop.run, daemon=True)
        self.worker.start()
        org = create_org(self.services.db, "org", plan_id="payg")
        self.services.billing.ledger.purchase(org.id, 10**7, f"setup:{org.id}")
        self.key = create_key(self.services.db, org.id, "k", ("generate", "read", "admin"))[1]
        self.h = {"Authorization": f"Bearer {self.key}"}

    def close(self):
        self.loop.stop()
        self.worker.join(timeout=30)
        self.http.stop()
        self.services.db.dispose()

    def job(self, body: dict) -> dict:
        r = httpx.post(f"{self.base}/api/jobs", headers=self.h, json=body)
        assert r.status_code == 201, r.text
        job = httpx.get(f"{self.base}/api/jobs/{r.json()['id']}", params={"wait": 60}, headers=self.h).json()
        for _ in range(600):
            if job["state"] in ("succeeded", "failed", "canceled"):
                break
            job = httpx.get(f"{self.base}/api/jobs/{job['id']}", headers=self.h).json()
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
                        ({"cfg_scale": 40}, "cfg_scale")):
        r = requests.post(url, headers=h, files={"none": ""}, data={"prompt": "x", **data})
        assert r.status_code == 400 and field in r.text, (data, r.text)


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
