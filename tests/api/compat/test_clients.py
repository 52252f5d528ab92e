"""The compatible APIs against a live server on a random port, with a real worker and `solvent-tiny`:
the official `openai` client, `webuiapi`, and raw HTTP exactly as Stability's examples send it.
Every request is an ordinary job: it shows up in the organisation's history, with its credits charged."""

from __future__ import annotations

import base64
import io
import threading
import time

import httpx
import openai
import pytest
import requests
import webuiapi
from PIL import Image

from solvent.accounts import create_key, create_org
from solvent.billing import set_plan
from solvent.config import Settings
from solvent.jobs.registry import create_worker
from solvent.root import build_app
from solvent.workers import WorkerLoop, declaration
from solvent.workers.local import LocalBackend
from tests.harness import ThreadServer, sqlite_services

PROMPT = "a red circle on a blue background"


class Live:
    """A live server on a random port with one worker; `install(engine, tmp)` adds models to the worker's store
    first, and `settings` override the server's."""

    def __init__(self, tmp, install=None, **settings):
        from solvent.root import build_engine

        self.services = sqlite_services(tmp, **settings)
        db = self.services.db
        set_plan(db, "payg", concurrent_jobs=8, rpm=1000, max_steps=150)
        self.app = build_app(self.services)
        self.http = ThreadServer(self.app)
        self.port, self.base = self.http.port, self.http.base
        engine = build_engine(Settings(home=tmp / "engine"))
        if install is not None:
            install(engine, tmp)
        w, _ = create_worker(db, name="w")
        self.loop = WorkerLoop(engine, LocalBackend(self.services, w.id), declaration(engine), poll=0.05)
        self.worker = threading.Thread(target=self.loop.run, daemon=True)
        self.worker.start()
        self.org, self.key = self.new_org("payg", credits=1000)

    def new_org(self, plan, credits=0):
        org = create_org(self.services.db, f"org-{plan}", plan_id=plan)
        if credits:
            self.services.billing.ledger.purchase(org.id, credits * 1000, f"setup:{org.id}")
        return org.id, create_key(self.services.db, org.id, "k", ("generate", "read", "admin"))[1]

    def close(self):
        self.loop.stop()
        self.worker.join(timeout=30)
        self.http.stop()
        self.services.db.dispose()

    def history(self, key=None):
        h = {"Authorization": f"Bearer {key or self.key}"}
        jobs = httpx.get(f"{self.base}/api/jobs", params={"limit": 100}, headers=h).json()["jobs"]
        statement = httpx.get(f"{self.base}/api/billing/statement", headers=h).json()["transactions"]
        return jobs, statement


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = Live(tmp_path_factory.mktemp("compat"))
    yield server
    server.close()


def png(w=64, h=64, colour=(30, 60, 200), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), colour).save(buf, "PNG")
    return buf.getvalue()


def is_png(data: bytes, size=(64, 64)) -> bool:
    img = Image.open(io.BytesIO(data))
    return img.format == "PNG" and img.size == size


# ----------------------------------------------------------------------------------------------
# OpenAI
# ----------------------------------------------------------------------------------------------


def test_openai_client_generate_edit_and_models(live):
    client = openai.OpenAI(base_url=f"{live.base}/v1", api_key=live.key, max_retries=0)
    before, _ = live.history()
    r = client.images.generate(model="solvent-tiny", prompt=PROMPT, n=2, size="64x64", response_format="b64_json")
    assert len(r.data) == 2 and all(is_png(base64.b64decode(d.b64_json)) for d in r.data)
    r = client.images.generate(prompt=PROMPT, size="64x64")  # dall-e style: a signed URL by default
    url = r.data[0].url
    assert "signature=" in url and is_png(httpx.get(url).content)
    bad = httpx.get(url.replace("signature=", "signature=0"))
    assert bad.status_code == 403 and bad.json()["error"]["param"] == "signature"
    mask = png(mode="RGBA", colour=(0, 0, 0, 0))
    r = client.images.edit(image=("i.png", png()), mask=("m.png", mask), prompt=PROMPT, size="64x64",
                           response_format="b64_json")
    assert is_png(base64.b64decode(r.data[0].b64_json))
    assert "solvent-tiny" in [m.id for m in client.models.list().data]
    jobs, statement = live.history()
    assert len(jobs) - len(before) == 3  # ordinary jobs in the organisation's history
    assert [t["kind"] for t in statement].count("capture") >= 3


def test_openai_errors_map_to_the_clients_exceptions(live):
    client = openai.OpenAI(base_url=f"{live.base}/v1", api_key=live.key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt=PROMPT, size="1000x7")
    assert e.value.body["param"] == "size"
    with pytest.raises(openai.BadRequestError):
        client.images.generate(prompt=PROMPT, n=11)
    with pytest.raises(openai.BadRequestError):
        client.images.generate(prompt=PROMPT, response_format="gif")
    with pytest.raises(openai.NotFoundError):
        client.images.generate(prompt=PROMPT, model="no-such-model")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live.base}/v1", api_key="sk-wrong", max_retries=0).images.generate(prompt="x")
    _, broke = live.new_org("payg", credits=0)
    with pytest.raises(openai.RateLimitError) as e:  # no credits: OpenAI's quota error, not retried
        openai.OpenAI(base_url=f"{live.base}/v1", api_key=broke, max_retries=2).images.generate(prompt=PROMPT)
    assert e.value.code == "insufficient_quota" and e.value.response.headers["x-should-retry"] == "false"
    set_plan(live.services.db, "restricted", create=True, allowed_models=["another-model"], included_mc=10**6,
             period="day", concurrent_jobs=4, rpm=100)
    _, restricted = live.new_org("restricted")
    with pytest.raises(openai.PermissionDeniedError) as e:  # outside the plan → refused in OpenAI's shape
        openai.OpenAI(base_url=f"{live.base}/v1", api_key=restricted, max_retries=0).images.generate(
            prompt=PROMPT, model="solvent-tiny", size="64x64")
    assert e.value.body["param"] == "model" and set(e.value.body) == {"message", "type", "param", "code"}


# ----------------------------------------------------------------------------------------------
# AUTOMATIC1111 through webuiapi
# ----------------------------------------------------------------------------------------------


def webui(live, key=None):
    api = webuiapi.WebUIApi(host="127.0.0.1", port=live.port)
    api.set_auth("anyone", key or live.key)
    return api


def test_webuiapi_txt2img_img2img_models_samplers_options(live):
    api = webui(live)
    r = api.txt2img(prompt=PROMPT, width=64, height=64, steps=4, seed=7, batch_size=2)
    assert [im.size for im in r.images] == [(64, 64), (64, 64)]
    assert r.info["seed"] == 7 and r.info["all_seeds"] == [7, 8] and "Seed: 8" in r.info["infotexts"][1]
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    r = api.img2img(images=[init], prompt=PROMPT, denoising_strength=0.5, width=64, height=64, steps=4)
    assert r.image.size == (64, 64)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    r = api.img2img(images=[init], mask_image=mask, prompt=PROMPT, inpainting_fill=0, width=64, height=64,
                    steps=4, seed=3)
    assert r.image.size == (64, 64) and r.info["seed"] == 3
    titles = [m["title"] for m in api.get_sd_models()]
    assert any(t.startswith("solvent-tiny [") for t in titles)
    assert "Euler a" in [s["name"] for s in api.get_samplers()]
    api.set_options({"sd_model_checkpoint": titles[0]})
    assert api.get_options()["sd_model_checkpoint"] == titles[0]
    raw = requests.post(f"{live.base}/sdapi/v1/txt2img", auth=("u", live.key),
                        json={"prompt": PROMPT, "width": 64, "height": 64, "steps": 4, "seed": 3}).json()
    info = requests.post(f"{live.base}/sdapi/v1/png-info", auth=("u", live.key),
                         json={"image": raw["images"][0]}).json()
    assert "Steps: 4" in info["info"] and info["parameters"]["Seed"] == "3"


def test_a1111_progress_preview_and_interrupt(live):
    api = webui(live)
    out = {}
    t = threading.Thread(target=lambda: out.update(r=api.txt2img(prompt=PROMPT, width=64, height=64, steps=150,
                                                                 sampler_name="Euler", seed=1)))
    t.start()
    seen_preview = False
    deadline = time.time() + 60
    while time.time() < deadline:
        p = api.get_progress()
        if p["progress"] > 0.05 and p["current_image"]:
            seen_preview = True
            Image.open(io.BytesIO(base64.b64decode(p["current_image"])))
            break
        time.sleep(0.1)
    api.interrupt()
    t.join(timeout=60)
    assert seen_preview
    assert out["r"].images == [] and out["r"].info["all_seeds"] == []  # interrupted before any image was made
    assert api.get_progress()["progress"] == 0.0


def test_a1111_errors_in_its_shape(live):
    r = requests.post(f"{live.base}/sdapi/v1/txt2img", auth=("u", live.key), json={"steps": 0})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "steps"]
    r = requests.post(f"{live.base}/sdapi/v1/txt2img", auth=("u", live.key), json={"sampler_name": "Nope"})
    assert r.status_code == 422 and "sampler_name" in r.text
    r = requests.post(f"{live.base}/sdapi/v1/options", auth=("u", live.key), json={"sd_model_checkpoint": "x"})
    assert r.status_code == 422
    r = requests.post(f"{live.base}/sdapi/v1/txt2img", auth=("u", "sk-wrong"), json={})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    r = requests.post(f"{live.base}/sdapi/v1/img2img", auth=("u", live.key), json={"init_images": ["%%%"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_image"
    _, community = live.new_org("community")
    r = requests.post(f"{live.base}/sdapi/v1/txt2img", auth=("u", community), json={"steps": 60, "width": 64,
                                                                                    "height": 64})
    assert r.status_code == 403 and r.json()["error"] == "plan_limit"


# ----------------------------------------------------------------------------------------------
# Stability, raw HTTP as its examples send it
# ----------------------------------------------------------------------------------------------


def stab(live, path, key=None, accept="application/json", **kw):
    headers = {"Authorization": f"Bearer {key or live.key}", "Accept": accept, **kw.pop("headers", {})}
    return requests.post(f"{live.base}/v1/generation/solvent-tiny/{path}", headers=headers, **kw)


def test_stability_text_to_image_json_and_png(live):
    body = {"text_prompts": [{"text": PROMPT}, {"text": "green", "weight": -1}], "cfg_scale": 7, "height": 64,
            "width": 64, "samples": 2, "steps": 10, "seed": 42, "sampler": "K_EULER", "style_preset": "pixel-art"}
    r = stab(live, "text-to-image", json=body)
    assert r.status_code == 200, r.text
    arts = r.json()["artifacts"]
    assert [a["seed"] for a in arts] == [42, 43] and all(a["finishReason"] == "SUCCESS" for a in arts)
    assert is_png(base64.b64decode(arts[0]["base64"]))
    r = stab(live, "text-to-image", accept="image/png", json={**body, "samples": 1})
    assert r.headers["content-type"] == "image/png" and r.headers["Finish-Reason"] == "SUCCESS"
    assert r.headers["Seed"] == "42" and is_png(r.content)


def test_stability_image_to_image_masking_and_upscale(live):
    data = {"text_prompts[0][text]": PROMPT, "text_prompts[0][weight]": 1, "init_image_mode": "IMAGE_STRENGTH",
            "image_strength": 0.35, "cfg_scale": 7, "samples": 1, "steps": 10}
    r = stab(live, "image-to-image", files={"init_image": png()}, data=data)
    assert r.status_code == 200, r.text
    r = stab(live, "image-to-image", files={"init_image": png()},
             data={**data, "init_image_mode": "STEP_SCHEDULE", "step_schedule_start": 0.6})
    assert r.status_code == 200, r.text
    mask = png(colour=(255, 255, 255))
    for source, files in (("MASK_IMAGE_WHITE", {"init_image": png(), "mask_image": mask}),
                          ("MASK_IMAGE_BLACK", {"init_image": png(), "mask_image": mask}),
                          ("INIT_IMAGE_ALPHA", {"init_image": png(mode="RGBA", colour=(9, 9, 9, 0))})):
        r = stab(live, "image-to-image/masking", files=files, data={**data, "mask_source": source})
        assert r.status_code == 200, (source, r.text)
    r = stab(live, "image-to-image/upscale", files={"image": png()}, data={"width": 128})
    assert r.status_code == 404 and r.json()["name"] == "not_found"


def test_stability_engines_account_balance(live):
    h = {"Authorization": f"Bearer {live.key}"}
    engines = requests.get(f"{live.base}/v1/engines/list", headers=h).json()
    assert {"id": "solvent-tiny", "type": "PICTURE"}.items() <= engines[0].items()
    account = requests.get(f"{live.base}/v1/user/account", headers=h).json()
    assert account["organizations"][0]["id"] == live.org
    before = requests.get(f"{live.base}/v1/user/balance", headers=h).json()["credits"]
    stab(live, "text-to-image", json={"text_prompts": [{"text": PROMPT}], "width": 64, "height": 64, "steps": 10})
    after = requests.get(f"{live.base}/v1/user/balance", headers=h).json()["credits"]
    assert after < before  # the real credit balance


def test_stability_engine_ids_from_its_samples_are_served(live):
    h = {"Authorization": f"Bearer {live.key}", "Accept": "application/json"}
    ids = [e["id"] for e in requests.get(f"{live.base}/v1/engines/list", headers=h).json()]
    assert {"stable-diffusion-v1-6", "stable-diffusion-xl-1024-v1-0"} <= set(ids)
    body = {"text_prompts": [{"text": PROMPT}], "width": 512, "height": 512, "steps": 10, "seed": 3}
    for engine in ("stable-diffusion-v1-6", "stable-diffusion-xl-1024-v1-0"):  # the samples' ids and default size
        r = requests.post(f"{live.base}/v1/generation/{engine}/text-to-image", headers=h, json=body, timeout=120)
        assert r.status_code == 200, (engine, r.text)
        assert Image.open(io.BytesIO(base64.b64decode(r.json()["artifacts"][0]["base64"]))).size == (512, 512)
    jobs, _ = live.history()
    assert jobs[0]["model"] == "solvent-tiny"  # no SD model installed: the default model serves them
    live.services.settings.stability_engines = {"stable-diffusion-v1-6": "no-such-model"}
    try:  # an operator's mapping wins, and a mapping to nothing served is a 404 naming the engine
        r = requests.post(f"{live.base}/v1/generation/stable-diffusion-v1-6/text-to-image", headers=h, json=body)
        assert r.status_code == 404 and "stable-diffusion-v1-6" in r.json()["message"]
    finally:
        live.services.settings.stability_engines = {}


@pytest.mark.parametrize("body,name", [
    ({"width": 100, "height": 64}, "invalid_height_or_width"),
    ({"width": 1088, "height": 1024}, "invalid_pixel_count"),
    ({"text_prompts": []}, "invalid_prompts"),
    ({"text_prompts": [{"text": "  "}]}, "invalid_prompts"),
    ({"steps": 5}, "bad_request"),
    ({"steps": 151}, "bad_request"),
    ({"cfg_scale": 36}, "bad_request"),
    ({"samples": 11}, "bad_request"),
    ({"seed": -1}, "bad_request"),
    ({"sampler": "K_FOO"}, "bad_request"),
    ({"style_preset": "watercolour"}, "bad_request"),
    ({"clip_guidance_preset": "FASTEST"}, "bad_request"),
    ({"unknown_field": 1}, "bad_request"),
])
def test_stability_validation_errors_in_its_shape(live, body, name):
    full = {"text_prompts": [{"text": PROMPT}], "width": 64, "height": 64, "steps": 10, **body}
    r = stab(live, "text-to-image", json=full)
    assert r.status_code == 400, r.text
    err = r.json()
    assert set(err) == {"id", "name", "message"} and err["name"] == name


def test_stability_more_refusals(live):
    body = {"text_prompts": [{"text": PROMPT}], "width": 64, "height": 64, "steps": 10}
    r = stab(live, "text-to-image", accept="image/png", json={**body, "samples": 2})
    assert r.status_code == 400 and r.json()["name"] == "invalid_samples"
    r = stab(live, "text-to-image", data="{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["name"] == "bad_request"
    r = stab(live, "image-to-image", files={"init_image": png(100, 100)}, data={"text_prompts[0][text]": "x"})
    assert r.json()["name"] == "invalid_image_dimensions"
    r = stab(live, "image-to-image/masking", files={"init_image": png(), "mask_image": png(128, 128)},
             data={"text_prompts[0][text]": "x", "mask_source": "MASK_IMAGE_WHITE", "steps": 10})
    assert r.json()["name"] == "invalid_mask_image"
    r = stab(live, "image-to-image", data={"text_prompts[0][text]": "x"}, files={"other": b"x"})
    assert r.status_code == 400 and "init_image" in r.json()["message"]
    r = stab(live, "text-to-image", json=body, headers={"Organization": "org-someone-else"})
    assert r.status_code == 403 and r.json()["name"] == "permission_denied"
    r = stab(live, "text-to-image", key="sk-wrong", json=body)
    assert r.status_code == 401 and r.json()["name"] == "unauthorized"
    r = requests.post(f"{live.base}/v1/generation/no-such-engine/text-to-image", json=body,
                      headers={"Authorization": f"Bearer {live.key}"})
    assert r.status_code == 404 and r.json()["name"] == "not_found"
    _, community = live.new_org("community")
    r = stab(live, "text-to-image", key=community, json={**body, "steps": 60})
    assert r.status_code == 403 and r.json()["name"] == "permission_denied"  # outside the plan, Stability's shape
    _, broke = live.new_org("payg")
    r = stab(live, "text-to-image", key=broke, json=body)
    assert r.status_code == 402 and r.json()["name"] == "insufficient_balance"


def test_stability_v2beta_stable_image(live):
    h = {"Authorization": f"Bearer {live.key}", "Accept": "image/*"}
    r = requests.post(f"{live.base}/v2beta/stable-image/generate/core", headers=h, files={"none": ""},
                      data={"prompt": PROMPT, "output_format": "webp", "seed": 5, "aspect_ratio": "1:1"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/webp" and r.headers["seed"] == "5"
    assert r.headers["finish-reason"] == "SUCCESS"
    r = requests.post(f"{live.base}/v2beta/stable-image/generate/sd3", files={"none": ""},
                      headers={**h, "Accept": "application/json"}, data={"prompt": PROMPT, "aspect_ratio": "16:9"})
    out = r.json()
    assert out["finish_reason"] == "SUCCESS" and Image.open(io.BytesIO(base64.b64decode(out["image"]))).width > 64
    r = requests.post(f"{live.base}/v2beta/stable-image/generate/core", headers=h, files={"none": ""},
                      data={"prompt": PROMPT, "aspect_ratio": "7:3"})
    assert r.status_code == 400 and set(r.json()) == {"id", "name", "errors"}
    r = requests.post(f"{live.base}/v2beta/stable-image/generate/core", headers=h, files={"none": ""},
                      data={"prompt": ""})
    assert r.status_code == 400
    r = requests.post(f"{live.base}/v2beta/stable-image/generate/ultra-max", headers=h, files={"none": ""},
                      data={"prompt": PROMPT})
    assert r.status_code == 404
