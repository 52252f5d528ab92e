"""OpenAI Images as OpenAI answers it today, read through the `openai` package itself and as the JavaScript clients
read it (raw HTTP): GPT image names answer base64 by default, every current model name maps to a served model,
the documented parameters are accepted or refused by name, and the answer carries OpenAI's fields and usage."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from tests.api.compat.test_clients import Live, png
from tests.engine.test_segment import PROMPT, picture
from tests.segmenter_files import write_segmenter

MODELS = ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2", "chatgpt-image-latest", "dall-e-2",
          "dall-e-3")


def _install(engine, tmp):
    write_segmenter(tmp / "clipseg", picture(), PROMPT)
    engine.store.add(tmp / "clipseg", model_id="tiny-clipseg")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = Live(tmp_path_factory.mktemp("openai"), install=_install, subject_prompt=PROMPT)
    yield server
    server.close()


@pytest.fixture
def client(live):
    return openai.OpenAI(base_url=f"{live.base}/v1", api_key=live.key, max_retries=0)


def _img(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


@pytest.mark.parametrize("model", MODELS)
def test_every_current_model_name_is_served(client, model):
    r = client.images.generate(model=model, prompt=PROMPT, size="256x256")
    if model.startswith("dall-e"):  # dall-e answers a link by default
        assert r.data[0].url and r.data[0].b64_json is None
    else:  # GPT image models have no response_format: base64, always, unless a link is asked for
        assert r.data[0].b64_json and r.data[0].url is None
        assert _img(r.data[0].b64_json).size == (256, 256)
    assert r.size == "256x256" and r.output_format == "png" and r.background == "opaque"
    assert r.quality == ("standard" if model.startswith("dall-e") else "medium")
    assert r.created > 0 and r.usage is not None
    assert r.usage.input_tokens == r.usage.total_tokens > 0 and r.usage.input_tokens_details.text_tokens > 0


def test_a_gpt_model_answers_a_link_when_asked_and_usage_is_the_prompts_tokens(live, client):
    r = client.images.generate(model="gpt-image-1", prompt=PROMPT, size="64x64", response_format="url")
    assert "signature=" in r.data[0].url and httpx.get(r.data[0].url).status_code == 200
    short = client.images.generate(model="gpt-image-1", prompt="a", size="64x64")
    assert short.usage.input_tokens < r.usage.input_tokens  # counted, not a constant


def test_credits_travel_in_a_header_and_an_extension_field(live):
    r = httpx.post(f"{live.base}/v1/images/generations", headers={"Authorization": f"Bearer {live.key}"},
                   json={"model": "gpt-image-1", "prompt": PROMPT, "size": "64x64"}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert int(r.headers["solvent-credits-mc"]) == body["solvent"]["credits_mc"] > 0
    job = httpx.get(f"{live.base}/api/jobs/{body['solvent']['job_id']}",
                    headers={"Authorization": f"Bearer {live.key}"}).json()
    assert job["state"] == "succeeded"
    # The Vercel AI SDK's schema: data[].b64_json present; async-openai's: usage carries every token field.
    assert all("b64_json" in d for d in body["data"])
    assert set(body["usage"]) >= {"input_tokens", "output_tokens", "total_tokens", "input_tokens_details"}


def test_documented_parameters_are_accepted_or_refused_by_name(client):
    r = client.images.generate(model="gpt-image-1", prompt=PROMPT, size="64x64", stream=False, moderation="low",
                               output_format="webp", output_compression=50, user="u-1", quality="low",
                               background="opaque")
    assert _img(r.data[0].b64_json).format == "WEBP" and r.output_format == "webp" and r.quality == "low"
    hi = client.images.generate(model="gpt-image-1", prompt=PROMPT, size="64x64", output_format="jpeg",
                                output_compression=100)
    lo = client.images.generate(model="gpt-image-1", prompt=PROMPT, size="64x64", output_format="jpeg",
                                output_compression=5)
    assert len(base64.b64decode(lo.data[0].b64_json)) < len(base64.b64decode(hi.data[0].b64_json))
    for kwargs, param in (({"extra_body": {"stream": True}}, "stream"),
                          ({"extra_body": {"partial_images": 2}}, "partial_images"),
                          ({"output_compression": 50}, "output_compression"),  # PNG is lossless
                          ({"moderation": "strict"}, "moderation"),
                          ({"background": "transparent", "output_format": "jpeg"}, "background")):
        with pytest.raises(openai.BadRequestError) as e:
            client.images.generate(model="gpt-image-1", prompt=PROMPT, size="64x64", **kwargs)
        assert e.value.body["param"] == param, kwargs


def test_a_transparent_background_is_cut_out_by_the_segmenter(client):
    r = client.images.generate(model="gpt-image-1", prompt=PROMPT, size="64x64", background="transparent")
    img = _img(r.data[0].b64_json)
    assert img.mode == "RGBA" and r.background == "transparent"
    alpha = img.getchannel("A")
    assert alpha.getextrema()[0] < 255  # something is transparent


def test_edits_and_variations(client):
    img = png(64, 64)
    r = client.images.edit(model="gpt-image-1", image=("i.png", img), prompt=PROMPT, input_fidelity="high")
    assert _img(r.data[0].b64_json).size == (64, 64)
    with pytest.raises(openai.BadRequestError) as e:
        client.images.edit(model="gpt-image-1", image=("i.png", img), prompt=PROMPT, input_fidelity="exact")
    assert e.value.body["param"] == "input_fidelity"
    r = client.images.create_variation(image=("i.png", img), n=2, size="64x64", response_format="b64_json")
    assert len(r.data) == 2 and all(_img(d.b64_json).size == (64, 64) for d in r.data)
    r = client.images.create_variation(model="dall-e-2", image=("i.png", img), size="64x64")
    assert r.data[0].url
    with pytest.raises(openai.BadRequestError) as e:
        client.images.create_variation(image=("i.png", b"not an image"), size="64x64")
    assert e.value.body["param"] == "image"


def test_a_transparent_background_without_a_segmenter_is_refused_naming_it(tmp_path):
    server = Live(tmp_path)
    try:
        c = openai.OpenAI(base_url=f"{server.base}/v1", api_key=server.key, max_retries=0)
        with pytest.raises(openai.NotFoundError) as e:
            c.images.generate(model="gpt-image-1", prompt=PROMPT, size="64x64", background="transparent")
        assert e.value.body["param"] == "background" and "segmentation model" in e.value.body["message"]
    finally:
        server.close()
