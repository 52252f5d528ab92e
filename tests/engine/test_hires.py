"""Hires fix as AUTOMATIC1111 defines it: equal to its two passes run by hand (an image upscaler, and a latent mode
with the first pass's latents interpolated), for a batch with each image's own seed; said in the infotext; its
fields checked by name."""

import numpy as np
import pytest
import torch
from PIL import Image

from solvent.errors import ModelNotFound, ValidationFailed
from solvent.generation import GenerationRequest, Hires, parse_infotext
from tests.upscaler_files import esrgan, write

KW = dict(prompt="a red circle on a blue background", steps=6, seed=11, width=64, height=64, cfg_scale=2.0)


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int)).max() == 0


def test_an_image_upscaler_hires_fix_is_the_two_passes_by_hand(engine):
    h = Hires(scale=2, upscaler="Lanczos", steps=8, denoising=0.5, sampler="euler", prompt="a red circle, sharp")
    out = engine.generate(GenerationRequest(batch_size=2, hires=h, **KW))
    first = engine.generate(GenerationRequest(batch_size=2, **KW))
    for i, seed in enumerate((11, 12)):
        up = first.images[i].resize((128, 128), Image.Resampling.LANCZOS)
        by_hand = engine.generate(GenerationRequest(**{**KW, "prompt": "a red circle, sharp", "seed": seed,
                                                       "width": 128, "height": 128, "steps": 8, "sampler": "euler"},
                                                    init_image=up, strength=0.5))
        assert _same(out.images[i], by_hand.images[0])
    assert out.seeds == [11, 12] and out.usage.images == 2 and out.usage.pixels == 2 * 128 * 128
    assert out.usage.steps_run == 6 + 2 * 4  # the first pass, then 8 × 0.5 steps per image
    info = parse_infotext(out.infotexts[1])
    assert info["Size"] == "64x64" and info["Seed"] == "12" and info["Hires upscale"] == "2"
    assert info["Hires upscaler"] == "Lanczos" and info["Hires steps"] == "8" and info["Denoising strength"] == "0.5"
    assert info["Hires prompt"] == "a red circle, sharp" and info["Hires sampler"] == "Euler"
    assert out.params["hires"]["width"] == 128 and out.params["width"] == 64


def test_a_latent_hires_fix_interpolates_the_first_pass_latents(engine):
    h = Hires(resize_x=128, resize_y=0, upscaler="Latent (bicubic antialiased)", denoising=0.6)
    out = engine.generate(GenerationRequest(hires=h, **KW))
    lat = engine.generate(GenerationRequest(latents_out=True, **KW)).images
    side = 128 // (64 // lat.shape[-1])  # the latents of 128² (solvent-tiny's VAE downsamples 4×)
    up = torch.nn.functional.interpolate(lat.float(), size=(side, side), mode="bicubic", antialias=True)
    up = up.to(lat.dtype)
    by_hand = engine.generate(GenerationRequest(**{**KW, "width": 128, "height": 128}, init_latents=up,
                                                strength=0.6))
    assert _same(out.images[0], by_hand.images[0]) and out.images[0].size == (128, 128)
    plain = engine.generate(GenerationRequest(**{**KW, "width": 128, "height": 128}))
    assert not _same(out.images[0], plain.images[0])  # the second pass starts from the first's picture
    info = parse_infotext(out.infotexts[0])
    assert info["Hires resize"] == "128x128" and "Hires steps" not in info


def test_hires_with_an_installed_upscaler_and_past_the_trained_range(tmp_path, engine):
    engine.store.add(write(esrgan(), tmp_path / "x4.safetensors"), model_id="4x-test")
    out = engine.generate(GenerationRequest(**{**KW, "width": 128, "height": 128, "steps": 4},
                                            hires=Hires(scale=4, upscaler="4x-test", denoising=0.3)))
    # 512² is beyond solvent-tiny's 256: the second pass runs at 256² and is upscaled to 512² (the size policy)
    info = parse_infotext(out.infotexts[0])
    assert out.images[0].size == (512, 512) and info["Generated size"] == "256x256"
    assert info["Hires upscaler"] == "4x-test"


@pytest.mark.parametrize("hires,field", [
    (Hires(scale=0.5), "hr_scale"), (Hires(denoising=0), "denoising_strength"),
    (Hires(steps=-1), "hr_second_pass_steps"), (Hires(upscaler="R-ESRGAN 9x"), "hr_upscaler"),
    (Hires(sampler="K_FOO"), "hr_sampler_name"), (Hires(scale=8.5), "hr_scale"), (Hires(resize_x=-5), "hr_resize_x"),
    (Hires(resize_x=4096), "hr_scale"),  # past the largest output side
])
def test_bad_hires_fields_are_named(engine, hires, field):
    with pytest.raises((ValidationFailed, ModelNotFound)) as e:
        engine.generate(GenerationRequest(**{**KW, "width": 256, "height": 256}, hires=hires))
    assert e.value.field == field, e.value.message


def test_hires_is_for_text_to_image(engine):
    with pytest.raises(ValidationFailed) as e:
        engine.generate(GenerationRequest(**KW, init_image=Image.new("RGB", (64, 64)), hires=Hires()))
    assert e.value.field == "enable_hr"
