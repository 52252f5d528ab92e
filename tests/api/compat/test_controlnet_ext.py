"""The sd-webui-controlnet extension's API, driven by webuiapi (the real client): units in
`alwayson_scripts`, the model and module lists, and detect."""

from __future__ import annotations

import base64
import io
import json
import threading

import numpy as np
import pytest
import requests
import webuiapi
from PIL import Image, ImageDraw

from solvent.accounts import create_key, create_org
from solvent.billing import set_plan
from solvent.config import Settings
from solvent.generation import parse_infotext
from solvent.jobs.registry import create_worker
from solvent.root import build_app, build_engine
from solvent.workers import WorkerLoop, declaration
from solvent.workers.local import LocalBackend
from tests.engine.test_controlnet import _tiny_controlnet, silhouette
from tests.engine.test_vae import _tweaked_vae
from tests.harness import ThreadServer, sqlite_services
from tests.lora_files import write_kohya


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cn-live")
    services = sqlite_services(tmp)
    set_plan(services.db, "payg", concurrent_jobs=8, rpm=1000, max_steps=150)
    http = ThreadServer(build_app(services))
    engine = build_engine(Settings(home=tmp / "engine"))
    _tiny_controlnet().save_pretrained(tmp / "cn", safe_serialization=True)
    engine.store.add(tmp / "cn", model_id="control-tiny-scribble")
    from tests.adapter_files import write_image_encoder, write_ip_adapter
    from tests.engine.test_adapters import _unet

    write_image_encoder(tmp / "image_encoder")
    engine.store.add(tmp / "image_encoder", model_id="clip-vit-tiny")
    write_ip_adapter(tmp / "ip-adapter_tiny.safetensors", _unet())
    engine.store.add(tmp / "ip-adapter_tiny.safetensors", model_id="ip-adapter_tiny")
    _tweaked_vae().save_pretrained(tmp / "vae", safe_serialization=True)
    engine.store.add(tmp / "vae", model_id="bright-vae")
    lm = engine.load("solvent-tiny")
    engine.settings.loras_dir.mkdir(parents=True, exist_ok=True)
    write_kohya(lm.pipe.unet, lm.pipe.text_encoder, engine.settings.loras_dir / "sparkle.safetensors")
    w, _ = create_worker(services.db, name="w")
    loop = WorkerLoop(engine, LocalBackend(services, w.id), declaration(engine), poll=0.05)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    org = create_org(services.db, "a", plan_id="payg")
    services.billing.ledger.purchase(org.id, 10**7, "setup")
    key = create_key(services.db, org.id, "k", ("generate", "read"))[1]
    narrow = {"read": create_key(services.db, org.id, "ro", ("read",))[1],
              "generate": create_key(services.db, org.id, "go", ("generate",))[1]}
    api = webuiapi.WebUIApi(host="127.0.0.1", port=http.port)
    api.session.headers["Authorization"] = f"Bearer {key}"
    api.narrow_keys = narrow  # keys with one scope each, for the scope checks
    yield api, http.base, key
    loop.stop()
    thread.join(timeout=30)
    http.stop()


def test_lists_and_detect(live):
    api, _, _ = live
    assert api.controlnet_model_list() == ["control-tiny-scribble", "ip-adapter_tiny", "solvent-tiny-silhouette"]
    assert {"none", "canny", "scribble", "invert", "threshold", "ip-adapter_clip"} <= set(
        api.controlnet_module_list())
    edges = api.controlnet_detect([silhouette()], module="canny", threshold_a=50, threshold_b=100)
    img = np.asarray(edges.image)
    assert img.shape[:2] == (64, 64) and img.max() == 255 and img[0, 0].max() == 0


def test_txt2img_with_a_unit_as_webuiapi_sends_it(live):
    api, _, _ = live
    unit = webuiapi.ControlNetUnit(image=silhouette(), module="invert", model="control-tiny-scribble [0123abcd]",
                                   weight=0.6, guidance_end=0.8, control_mode=0)
    out = api.txt2img(prompt="a red circle", steps=6, seed=3, width=64, height=64, sampler_name="Euler",
                      cfg_scale=2, controlnet_units=[unit])
    info = parse_infotext(out.info["infotexts"][0])
    assert info["ControlNet 0"].startswith("Module: invert, Model: control-tiny-scribble [")
    assert "Weight: 0.6" in info["ControlNet 0"] and "Guidance End: 0.8" in info["ControlNet 0"]
    # webuiapi's `alwayson_scripts={}` default is one dict it writes the units into, so a later call without
    # units still sends them unless it passes a fresh one.
    plain = api.txt2img(prompt="a red circle", steps=6, seed=3, width=64, height=64, sampler_name="Euler", cfg_scale=2,
                        alwayson_scripts={})
    assert "ControlNet 0" not in plain.info["infotexts"][0]
    assert np.abs(np.asarray(out.image).astype(int) - np.asarray(plain.image).astype(int)).max() > 10


def test_bad_units_answer_in_a1111s_shape(live):
    _, base, key = live
    h = {"Authorization": f"Bearer {key}"}
    body = {"prompt": "x", "steps": 4, "width": 64, "height": 64,
            "alwayson_scripts": {"controlnet": {"args": [{"model": "missing", "image": "", "module": "none"}]}}}
    r = requests.post(f"{base}/sdapi/v1/txt2img", json=body, headers=h, timeout=30)
    assert r.status_code == 422 and "controlnet.args[0].image" in r.text and "detail" in r.json()
    body["alwayson_scripts"]["controlnet"]["args"][0]["image"] = webuiapi.raw_b64_img(silhouette())
    r = requests.post(f"{base}/sdapi/v1/txt2img", json=body, headers=h, timeout=30)
    assert r.status_code == 404 and "missing" in r.text
    r = requests.post(f"{base}/controlnet/detect", json={"controlnet_module": "openpose",
                                                         "controlnet_input_images": [webuiapi.raw_b64_img(silhouette())]},
                      headers=h, timeout=30)
    assert r.status_code == 422 and "estimator weights" in r.text
    disabled = {**body, "alwayson_scripts": {"controlnet": {"args": [{"enabled": False}]}}}
    assert requests.post(f"{base}/sdapi/v1/txt2img", json=disabled, headers=h, timeout=60).status_code == 200


def test_clip_skip_from_override_settings(live):
    _, base, key = live
    h = {"Authorization": f"Bearer {key}"}
    body = {"prompt": "a red circle", "steps": 4, "width": 64, "height": 64, "seed": 1,
            "override_settings": {"CLIP_stop_at_last_layers": 2}}
    r = requests.post(f"{base}/sdapi/v1/txt2img", json=body, headers=h, timeout=60)
    assert r.status_code == 200, r.text
    assert "Clip skip: 2" in json.loads(r.json()["info"])["infotexts"][0]
    body["override_settings"]["CLIP_stop_at_last_layers"] = 5  # solvent-tiny's text encoder has 2 layers
    r = requests.post(f"{base}/sdapi/v1/txt2img", json=body, headers=h, timeout=60)
    assert r.status_code == 422 and "at most 2" in r.text


def test_vaes_listed_and_chosen_by_override_settings(live):
    api, base, key = live
    h = {"Authorization": f"Bearer {key}"}
    assert requests.get(f"{base}/sdapi/v1/sd-vae", headers=h, timeout=30).json() == [
        {"model_name": "bright-vae", "filename": "bright-vae"}]
    body = {"prompt": "a red circle", "steps": 4, "width": 64, "height": 64, "seed": 1, "sampler_name": "Euler"}
    plain = api.txt2img(**body, alwayson_scripts={})
    bright = api.txt2img(**body, alwayson_scripts={}, override_settings={"sd_vae": "bright-vae.safetensors"})
    assert "VAE: bright-vae" in bright.info["infotexts"][0]
    assert np.asarray(bright.image).mean() > np.asarray(plain.image).mean() + 10
    r = requests.post(f"{base}/api/jobs", headers=h, json={"prompt": "x", "vae": "missing"}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["field"] == "vae"


def test_stability_control_sketch_and_structure(live):
    _, base, key = live
    h = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    sketch = Image.new("RGB", (128, 96), "white")
    ImageDraw.Draw(sketch).ellipse((10, 10, 60, 60), outline="black", width=4)
    buf = io.BytesIO()
    sketch.save(buf, "PNG")
    for service in ("sketch", "structure"):
        r = requests.post(f"{base}/v2beta/stable-image/control/{service}", headers=h, timeout=60,
                          files={"image": ("s.png", buf.getvalue(), "image/png")},
                          data={"prompt": "a red circle", "control_strength": "0.6", "seed": "5"})
        assert r.status_code == 200, r.text
        out = Image.open(io.BytesIO(base64.b64decode(r.json()["image"])))
        # 4:3 at 512² of area, as SD 1.x answers (solvent-tiny: generated at 256×184, then upscaled)
        assert out.size == (592, 440) and r.json()["seed"] == 5 and r.json()["finish_reason"] == "SUCCESS"
    r = requests.post(f"{base}/v2beta/stable-image/control/sketch", headers=h, timeout=60,
                      files={"image": ("s.png", buf.getvalue(), "image/png")}, data={"prompt": "x",
                                                                                     "control_strength": "3"})
    assert r.status_code == 400 and r.json()["name"] and "control_strength" in r.json()["errors"][0]

    style = Image.new("RGB", (80, 80), "orange")
    buf = io.BytesIO()
    style.save(buf, "PNG")
    r = requests.post(f"{base}/v2beta/stable-image/control/style", headers=h, timeout=60,
                      files={"image": ("s.png", buf.getvalue(), "image/png")},
                      data={"prompt": "a red circle", "fidelity": "0.9", "aspect_ratio": "3:2", "seed": "5"})
    assert r.status_code == 200, r.text
    out = Image.open(io.BytesIO(base64.b64decode(r.json()["image"])))
    assert out.size == (624, 416) and r.json()["seed"] == 5  # 3:2 at 512² of area (as SD 1.x), to 8 px
    r = requests.post(f"{base}/v2beta/stable-image/control/style", headers=h, timeout=60,
                      files={"image": ("s.png", buf.getvalue(), "image/png")}, data={"prompt": "x", "fidelity": "2"})
    assert r.status_code == 400 and "fidelity" in r.json()["errors"][0]


def test_an_ip_adapter_unit_as_webuiapi_sends_it(live):
    api, _, _ = live
    ref = Image.new("RGB", (64, 64), "blue")
    unit = webuiapi.ControlNetUnit(image=ref, module="ip-adapter_clip_sd15", model="ip-adapter_tiny [deadbeef]",
                                   weight=0.9)
    body = dict(prompt="a red circle", steps=6, seed=3, width=64, height=64, sampler_name="Euler", cfg_scale=2)
    out = api.txt2img(**body, controlnet_units=[unit])
    info = parse_infotext(out.info["infotexts"][0])
    assert info["ControlNet 0"].startswith("Module: ip-adapter, Model: ip-adapter_tiny [")
    assert "Weight: 0.9" in info["ControlNet 0"]
    plain = api.txt2img(**body, alwayson_scripts={})
    assert np.abs(np.asarray(out.image).astype(int) - np.asarray(plain.image).astype(int)).max() > 10


def test_lora_tags_in_an_a1111_prompt_and_the_lora_listing(live):
    _, base, key = live
    h = {"Authorization": f"Bearer {key}"}
    assert [x["name"] for x in requests.get(f"{base}/sdapi/v1/loras", headers=h, timeout=30).json()] == ["sparkle"]
    body = {"prompt": "a red circle <lora:sparkle:0.7>", "steps": 4, "width": 64, "height": 64, "seed": 2}
    r = requests.post(f"{base}/sdapi/v1/txt2img", json=body, headers=h, timeout=60)
    text = json.loads(r.json()["info"])["infotexts"][0]
    assert r.status_code == 200 and 'Lora weights: "sparkle: 0.7"' in text and "<lora" not in text.split("\n")[0]
    body["prompt"] = "a red circle <lora:missing:0.7>"
    r = requests.post(f"{base}/sdapi/v1/txt2img", json=body, headers=h, timeout=60)
    assert r.status_code == 404 and "'missing'" in r.text and "loras[0].name" in r.text


def test_each_route_needs_its_scope(live):
    api, base, _ = live
    img = webuiapi.raw_b64_img(silhouette())
    read_only = {"Authorization": f"Bearer {api.narrow_keys['read']}"}
    for path, body in (("/controlnet/detect", {"controlnet_module": "invert", "controlnet_input_images": [img]}),
                       ("/api/control/preview", {"image": img})):
        r = requests.post(f"{base}{path}", json=body, headers=read_only, timeout=30)
        assert r.status_code == 403 and "generate" in r.text, (path, r.text)
    r = requests.get(f"{base}/controlnet/model_list", headers={"Authorization": f"Bearer {api.narrow_keys['generate']}"},
                     timeout=30)
    assert r.status_code == 403 and "read" in r.text
    assert requests.get(f"{base}/controlnet/model_list", timeout=30).status_code == 401
