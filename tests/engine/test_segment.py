"""Segmenters: a CLIPSeg folder in transformers' layout, written by the test and loaded offline, finds what a prompt
names exactly as transformers runs it; background removal keeps that as alpha; `mask_prompt` inpainting equals
inpainting with the found region as the mask, computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from solvent.errors import ModelNotFound, ValidationFailed
from solvent.generation.edits import grow_mask
from solvent.generation.request import GenerationRequest, SegmentRequest
from tests.segmenter_files import logits, write_segmenter

PROMPT = "the red circle"


def picture() -> Image.Image:
    img = Image.new("RGB", (64, 64), (30, 160, 40))
    ImageDraw.Draw(img).ellipse((16, 16, 48, 48), fill=(250, 0, 0))
    return img


@pytest.fixture
def seg(engine, tmp_path):
    model = write_segmenter(tmp_path / "clipseg", picture(), PROMPT)
    engine.store.add(tmp_path / "clipseg", model_id="tiny-clipseg")
    from transformers import CLIPSegProcessor

    return model, CLIPSegProcessor.from_pretrained(str(tmp_path / "clipseg"))


def test_the_store_recognises_a_clipseg_folder(engine, seg):
    rec = engine.store.get("tiny-clipseg")
    assert (rec.kind, rec.details) == ("segmenter", {"task": "segment", "model_type": "clipseg", "prompted": True})
    assert engine.fits(engine.store.get("solvent-tiny"))["segmenters"] == ["tiny-clipseg"]
    assert [r.id for r in engine.store.list("segmenter")] == ["tiny-clipseg"]


def test_the_probability_map_is_transformers_own(engine, seg):
    model, processor = seg
    img = picture()
    got = np.asarray(engine.segment(img, PROMPT)).astype(int)
    raw = logits(model, processor, img, PROMPT)
    up = torch.nn.functional.interpolate(raw[None, None], size=(64, 64), mode="bilinear", align_corners=False)[0, 0]
    want = (up.sigmoid() * 255).round().numpy().astype(int)
    assert got.shape == (64, 64) and np.abs(got - want).max() <= 1  # float rounding only
    assert 0.2 < (got >= 128).mean() < 0.8  # the calibrated model finds about half


def test_background_removal_keeps_the_image_with_the_map_as_alpha(engine, seg):
    img = picture()
    out = engine.run_segment(SegmentRequest(img, PROMPT))
    cut = out.images[0]
    assert cut.mode == "RGBA" and cut.size == img.size
    assert np.array_equal(np.asarray(cut)[..., :3], np.asarray(img))
    assert np.array_equal(np.asarray(cut)[..., 3], np.asarray(engine.segment(img, PROMPT)))
    assert "Segmenter: tiny-clipseg" in out.infotexts[0] and out.params["task"] == "segment"
    assert out.usage.pixels == 64 * 64 and out.usage.model_id == "tiny-clipseg"


def test_a_mask_prompt_inpaints_exactly_the_found_region(engine, seg):
    img = picture()
    found = engine.segment(img, PROMPT).point(lambda v: 255 if v >= 128 else 0)
    by_hand = engine.generate(GenerationRequest(prompt="a blue square", init_image=img, mask=grow_mask(found, 3),
                                                strength=1.0, steps=4, seed=5))
    searched = engine.generate(GenerationRequest(prompt="a blue square", init_image=img, mask_prompt=PROMPT,
                                                 mask_grow=3, strength=1.0, steps=4, seed=5))
    assert np.array_equal(np.asarray(searched.images[0]), np.asarray(by_hand.images[0]))
    assert searched.params["mode"] == "inpaint" and searched.params["segmenter"] == "tiny-clipseg"
    assert "Mask prompt: the red circle" in searched.infotexts[0]
    tight = engine.generate(GenerationRequest(prompt="a blue square", init_image=img, mask_prompt=PROMPT,
                                              strength=1.0, steps=4, seed=5)).images[0]
    far = np.asarray(found) == 0  # outside the found region the image is kept as it was, inside it is repainted
    assert far.any() and np.array_equal(np.asarray(tight)[far], np.asarray(img)[far])
    assert not np.array_equal(np.asarray(tight)[~far], np.asarray(img)[~far])


def test_what_is_not_found_or_not_installed_is_named(engine, tmp_path):
    img = picture()
    with pytest.raises(ModelNotFound) as e:
        engine.segment(img, PROMPT)
    assert "solvent models add FOLDER" in e.value.message
    model = write_segmenter(tmp_path / "blind", img, PROMPT)
    last = model.decoder.transposed_convolution
    with torch.no_grad():  # a model that finds nothing anywhere
        (last[-1] if isinstance(last, torch.nn.Sequential) else last).bias -= 100
    model.save_pretrained(str(tmp_path / "blind"))
    engine.store.add(tmp_path / "blind", model_id="blind")
    with pytest.raises(ValidationFailed) as e:
        engine.generate(GenerationRequest(prompt="x", init_image=img, mask_prompt="a dog", steps=2))
    assert e.value.field == "mask_prompt" and "was not found" in e.value.message
    with pytest.raises(ValidationFailed) as e:
        engine.generate(GenerationRequest(prompt="x", mask_prompt="a dog", steps=2))
    assert e.value.field == "mask_prompt"
    with pytest.raises(ValidationFailed) as e:
        engine.segment(img, "  ")
    assert e.value.field == "prompt"
    with pytest.raises(ValidationFailed) as e:
        engine.generate(GenerationRequest(prompt="x", init_image=img, mask_prompt="a", segmenter="solvent-tiny"))
    assert e.value.field == "segmenter"
