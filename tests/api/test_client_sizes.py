"""Every client's default size on the embedded model, against a live server with a real worker: open-webui and
SillyTavern (AUTOMATIC1111's txt2img at 512², as they send it), webuiapi's defaults, LibreChat and the openai
client (1024², and the Images API's non-square sizes), Stability's v1 (512², named or left out) and v2beta's
aspect ratios, the native API. solvent-tiny generates at most 256², so each image is upscaled, and says so."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
import requests
from PIL import Image

from solvent.generation import parse_infotext, read_metadata
from tests.api.compat.test_clients import PROMPT, Live, stab, webui
from tests.harness import wait_job


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = Live(tmp_path_factory.mktemp("sizes"))
    yield server
    server.close()


def _image(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_open_webui_and_sillytavern_txt2img_bodies_at_512(live):
    auth = "Basic " + base64.b64encode(f"user:{live.key}".encode()).decode()
    open_webui = {"prompt": PROMPT, "batch_size": 1, "width": 512, "height": 512}
    silly = {"prompt": PROMPT, "negative_prompt": "blurry", "sampler_name": "DPM++ 2M", "scheduler": "Automatic",
             "steps": 8, "cfg_scale": 7, "width": 512, "height": 512, "restore_faces": False, "enable_hr": False,
             "hr_upscaler": "Latent", "hr_scale": 2, "hr_second_pass_steps": 0, "denoising_strength": 0.7,
             "seed": -1, "override_settings": {"CLIP_stop_at_last_layers": 1},
             "override_settings_restore_afterwards": True, "clip_skip": 1, "save_images": False,
             "send_images": True, "do_not_save_grid": True, "do_not_save_samples": True}
    for body in (open_webui, silly):
        r = requests.post(f"{live.base}/sdapi/v1/txt2img", json=body, headers={"Authorization": auth}, timeout=120)
        assert r.status_code == 200, r.text
        out = r.json()
        assert _image(out["images"][0]).size == (512, 512)
        info = parse_infotext(out["info"] if isinstance(out["info"], str) and "\n" in out["info"] else
                              __import__("json").loads(out["info"])["infotexts"][0])
        assert info["Size"] == "512x512" and info["Generated size"] == "256x256"


def test_webuiapi_defaults(live):
    # webuiapi's own width and height (512); a fresh `alwayson_scripts` because webuiapi's default is one shared dict
    # that an earlier ControlNet call in this process may have filled
    result = webui(live).txt2img(prompt=PROMPT, steps=6, alwayson_scripts={})
    assert result.image.size == (512, 512)


def test_librechat_and_the_openai_client_at_their_sizes(live):
    _, key = live.new_org("professional", credits=1000)  # its plan allows 1792×1024 (Pay as you go: 1 MP)
    client = openai.OpenAI(base_url=f"{live.base}/v1", api_key=key, max_retries=0)
    r = client.images.generate(model="dall-e-3", prompt=PROMPT, response_format="b64_json")  # no size: 1024²
    assert _image(r.data[0].b64_json).size == (1024, 1024)
    # LibreChat's DALL·E 3 tool: size and quality named, a URL back
    r = client.images.generate(model="dall-e-3", prompt=PROMPT, size="1024x1024", quality="standard", n=1)
    assert Image.open(io.BytesIO(httpx.get(r.data[0].url).content)).size == (1024, 1024)
    for model, size in (("dall-e-3", "1792x1024"), ("gpt-image-1", "1024x1536"), ("dall-e-2", "512x512"),
                        ("dall-e-2", "256x256")):
        r = client.images.generate(model=model, prompt=PROMPT, size=size, response_format="b64_json")
        w, h = (int(v) for v in size.split("x"))
        assert _image(r.data[0].b64_json).size == (w, h), (model, size)


def test_stability_v1_and_v2beta_defaults(live):
    body = {"text_prompts": [{"text": PROMPT}], "steps": 10}
    for extra in ({"width": 512, "height": 512}, {}):  # v1's default for an SD 1.x engine: 512²
        r = stab(live, "text-to-image", json={**body, **extra})
        assert r.status_code == 200, r.text
        assert _image(r.json()["artifacts"][0]["base64"]).size == (512, 512)
    h = {"Authorization": f"Bearer {live.key}", "Accept": "image/*"}
    for ratio, size in ((None, (512, 512)), ("16:9", (680, 384))):
        data = {"prompt": PROMPT, **({"aspect_ratio": ratio} if ratio else {})}
        r = requests.post(f"{live.base}/v2beta/stable-image/generate/core", headers=h, files={"none": ""},
                          data=data, timeout=120)
        assert r.status_code == 200, r.text
        assert Image.open(io.BytesIO(r.content)).size == size


def test_native_api_says_what_it_did_and_prices_the_upscale_apart(live):
    h = {"Authorization": f"Bearer {live.key}"}
    quotes = {}
    for size in (256, 1024):
        q = httpx.post(f"{live.base}/api/quote", headers=h, json={"prompt": PROMPT, "width": size, "height": size,
                                                                 "steps": 10})
        assert q.status_code == 200, q.text
        quotes[size] = q.json()["price_mc"]
    # the same 256² generation, plus the upscale to 1024² (1 credit per output megapixel by default)
    assert quotes[1024] - quotes[256] == 1000
    r = httpx.post(f"{live.base}/api/jobs", headers=h, json={"prompt": PROMPT, "width": 1024, "height": 768,
                                                            "steps": 6})
    assert r.status_code == 201, r.text
    job = wait_job(live.base, live.key, r.json()["id"])
    assert job["state"] == "succeeded", job
    image = job["images"][0]
    assert (image["width"], image["height"]) == (1024, 768)
    text, meta = read_metadata(httpx.get(f"{live.base}{image['url']}", headers=h).content)
    assert meta["params"]["size_policy"] == {"generated_width": 256, "generated_height": 192,
                                             "upscaler": "solvent-tiny-upscale"}  # its own, by default
    assert parse_infotext(text)["Generated size"] == "256x192"
