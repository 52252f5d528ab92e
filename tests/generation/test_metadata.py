import io

import pytest
from PIL import Image

from solvent.generation import GenerationRequest, encode_image, infotext, parse_infotext, read_metadata

TEXT = infotext(prompt="a red circle, (big:1.2)", negative_prompt="blurry", steps=20, sampler_label="Euler a",
                cfg_scale=7.0, seed=123, width=512, height=512, model_hash="abcdef1234", model_name="sd15",
                loras=[("style", 0.8)])


def test_infotext_is_in_a1111_layout():
    lines = TEXT.split("\n")
    assert lines[0] == "a red circle, (big:1.2)"
    assert lines[1] == "Negative prompt: blurry"
    assert lines[2].startswith("Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 123, Size: 512x512, "
                               "Model hash: abcdef1234, Model: sd15")


def test_infotext_parses_back():
    p = parse_infotext(TEXT)
    assert p["prompt"] == "a red circle, (big:1.2)" and p["negative_prompt"] == "blurry"
    assert p["Steps"] == "20" and p["Sampler"] == "Euler a" and p["Seed"] == "123" and p["Size"] == "512x512"
    assert p["Lora weights"] == "style: 0.8"


@pytest.mark.parametrize("fmt", ["png", "webp", "jpeg"])
def test_metadata_round_trips_through_pillow(fmt):
    data = encode_image(Image.new("RGB", (16, 16), "red"), fmt, TEXT, {"solvent": 1})
    img = Image.open(io.BytesIO(data))
    assert img.format == {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}[fmt]
    text, solvent = read_metadata(data)
    assert text == TEXT
    if fmt == "png":
        assert img.info["parameters"] == TEXT  # what other tools read
        assert solvent == {"solvent": 1}


def test_generated_png_carries_parameters_and_usage(engine):
    out = engine.generate(GenerationRequest(prompt="a green star", negative_prompt="noise", seed=5, steps=3))
    data = out.encode(0)
    text, meta = read_metadata(data)
    p = parse_infotext(text)
    assert p["prompt"] == "a green star" and p["negative_prompt"] == "noise"
    assert p["Seed"] == "5" and p["Model"] == "solvent-tiny" and p["Model hash"] == out.usage.model_hash[:10]
    assert meta["params"]["seed"] == 5 and meta["usage"]["steps_run"] == 3
