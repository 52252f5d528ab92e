"""ControlNet units through the native API: declared by the worker, priced per unit, stored as inputs,
run by a local or a remote worker, recorded in the image's infotext; bad units are clear errors."""

import base64
import io

import pytest
from PIL import Image

from solvent.config import Settings
from solvent.generation import parse_infotext, read_metadata
from solvent.root import build_engine
from tests.api.test_jobs import Harness
from tests.engine.test_controlnet import _tiny_controlnet, silhouette


def b64png(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def cn_engine(tmp_path_factory):
    from tests.adapter_files import tiny_t2i_adapter, write_image_encoder, write_ip_adapter
    from tests.engine.test_adapters import _unet

    tmp = tmp_path_factory.mktemp("cn")
    engine = build_engine(Settings(home=tmp / "engine"))
    _tiny_controlnet().save_pretrained(tmp / "cn", safe_serialization=True)
    engine.store.add(tmp / "cn", model_id="tiny-scribble")
    write_image_encoder(tmp / "image_encoder")
    engine.store.add(tmp / "image_encoder", model_id="tiny-vit")
    write_ip_adapter(tmp / "ip.safetensors", _unet())
    engine.store.add(tmp / "ip.safetensors", model_id="ip-tiny")
    tiny_t2i_adapter([32, 64, 128, 128], 8, xl=True).save_pretrained(tmp / "t2i", safe_serialization=True)
    engine.store.add(tmp / "t2i", model_id="t2i-tiny")
    return engine


@pytest.mark.parametrize("remote", [False, True], ids=["local", "worker-api"])
def test_a_controlnet_job_end_to_end(db, tmp_path, cn_engine, remote):
    api = Harness(db, tmp_path, cn_engine)
    try:
        api.start_worker(remote=remote)
        models = api.client.get("/api/models", headers=api.h()).json()
        assert models[0]["controlnets"] == ["solvent-tiny-silhouette", "tiny-scribble", "t2i-tiny"]
        assert (models[0]["t2i_adapters"], models[0]["ip_adapters"]) == (["t2i-tiny"], ["ip-tiny"])
        unit = {"model": "tiny-scribble", "image": b64png(silhouette()), "preprocessor": "invert", "weight": 0.7}
        body = {"prompt": "a red circle", "steps": 20, "seed": 4}
        plain = api.client.post("/api/quote", headers=api.h(), json=body).json()["price_mc"]
        steered = api.client.post("/api/quote", headers=api.h(), json={**body, "controlnets": [unit, unit]}).json()
        assert steered["price_mc"] == -(-plain * 160 // 100)  # +30% per unit
        r = api.client.post("/api/jobs", headers=api.h(), json={**body, "controlnets": [unit]})
        assert r.status_code == 201, r.text
        job = api.wait(r.json()["id"])
        assert job["state"] == "succeeded", job
        assert job["params"]["controls"] == [{"model": "tiny-scribble", "preprocessor": "invert", "weight": 0.7,
                                              "guidance_start": 0.0, "guidance_end": 1.0, "control_mode": "balanced",
                                              "threshold_a": None, "threshold_b": None}]  # no storage key shown
        png = api.client.get(job["images"][0]["url"], headers=api.h()).content
        text, _ = read_metadata(png)
        assert parse_infotext(text)["ControlNet 0"].startswith("Module: invert, Model: tiny-scribble [")
    finally:
        api.close()


def test_bad_units_are_refused_before_anything_is_queued(db, tmp_path, cn_engine):
    api = Harness(db, tmp_path, cn_engine)
    api.announce_models()
    good = {"model": "tiny-scribble", "image": b64png(silhouette())}
    cases = [
        ({**good, "model": "nope"}, 404, "controlnets[0].model"),
        ({**good, "image": "not base64!"}, 400, "controlnets[0].image"),
        ({**good, "preprocessor": "openpose_full"}, 422, "controlnets[0].preprocessor"),
        ({**good, "guidance_start": 0.9, "guidance_end": 0.1}, 422, "controlnets[0].guidance_start"),
        ({**good, "weight": 9}, 422, "controlnets.0.weight"),
    ]
    for unit, status, field in cases:
        r = api.client.post("/api/jobs", headers=api.h(), json={"prompt": "x", "controlnets": [unit]})
        assert (r.status_code, r.json()["error"]["field"]) == (status, field), r.text
    r = api.client.post("/api/jobs", headers=api.h(), json={"prompt": "x", "controlnets": [good] * 5})
    assert r.status_code == 422 and r.json()["error"]["field"] == "controlnets"
    assert api.client.get("/api/jobs", headers=api.h()).json()["jobs"] == []


@pytest.mark.parametrize("remote", [False, True], ids=["local", "worker-api"])
def test_image_prompts_and_t2i_units_end_to_end(db, tmp_path, cn_engine, remote):
    from tests.engine.test_adapters import reference

    api = Harness(db, tmp_path, cn_engine)
    try:
        api.start_worker(remote=remote)
        body = {"prompt": "a red circle", "steps": 20, "seed": 4}
        prompt = {"model": "ip-tiny", "weight": 0.8, "images": [b64png(reference()),
                                                                {"image": b64png(reference("blue")), "scale": 0.5}]}
        t2i = {"model": "t2i-tiny", "image": b64png(silhouette())}
        plain = api.client.post("/api/quote", headers=api.h(), json=body).json()["price_mc"]
        steered = api.client.post("/api/quote", headers=api.h(), json={**body, "ip_adapters": [prompt],
                                                                       "controlnets": [t2i]}).json()
        assert steered["price_mc"] == -(-plain * (100 + 2 * 10 + 5) // 100)  # 10% per reference, 5% per T2I unit
        r = api.client.post("/api/jobs", headers=api.h(), json={**body, "ip_adapters": [prompt], "controlnets": [t2i]})
        assert r.status_code == 201, r.text
        job = api.wait(r.json()["id"])
        assert job["state"] == "succeeded", job
        assert job["params"]["ip_adapters"] == [{"model": "ip-tiny", "weight": 0.8, "scales": [1.0, 0.5]}]
        text, _ = read_metadata(api.client.get(job["images"][0]["url"], headers=api.h()).content)
        fields = parse_infotext(text)
        assert fields["ControlNet 0"].startswith("Module: none, Model: t2i-tiny [")
        assert fields["ControlNet 1"].startswith("Module: ip-adapter, Model: ip-tiny [")
    finally:
        api.close()


def test_bad_image_prompts_are_refused_before_anything_is_queued(db, tmp_path, cn_engine):
    from tests.engine.test_adapters import reference

    api = Harness(db, tmp_path, cn_engine)
    api.announce_models()
    good = {"model": "ip-tiny", "images": [b64png(reference())]}
    cases = [
        ({**good, "model": "tiny-scribble"}, 404, "ip_adapters[0].model"),
        ({**good, "images": ["not base64!"]}, 400, "ip_adapters[0].images[0]"),
        ({**good, "images": []}, 422, "ip_adapters.0.images"),
        ({**good, "images": [{"image": b64png(reference()), "scale": 5}]}, 422, "ip_adapters.0.images.0.scale"),
        ({**good, "weight": -1}, 422, "ip_adapters.0.weight"),
    ]
    for unit, status, field in cases:
        r = api.client.post("/api/jobs", headers=api.h(), json={"prompt": "x", "ip_adapters": [unit]})
        assert (r.status_code, r.json()["error"]["field"]) == (status, field), r.text
    r = api.client.post("/api/jobs", headers=api.h(), json={"prompt": "x", "ip_adapters": [good] * 5})
    assert r.status_code == 422 and r.json()["error"]["field"] == "ip_adapters"
    r = api.client.post("/api/jobs", headers=api.h(), json={"prompt": "x", "refiner": "nope"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "refiner"
    assert api.client.get("/api/jobs", headers=api.h()).json()["jobs"] == []
