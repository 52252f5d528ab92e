"""SDXL's refiner: recognised as a refiner (folder and single file), handed the base model's latents at the
switch point, and equal to diffusers' ensemble of expert denoisers with the same seed."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from solvent.errors import IncompatibleAdapter, ValidationFailed
from solvent.generation import GenerationRequest
from solvent.generation.families import shipped_config
from tests.tiny_models import build_refiner, refiner_to_ldm, write_checkpoint


def _sched():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(shipped_config("sdxl", "scheduler"), prediction_type="epsilon")


@pytest.fixture
def xl(engine, tmp_path):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    base = write_checkpoint("sdxl", tmp_path / "base.safetensors")
    engine.store.add(tmp_path / "base.safetensors", model_id="xl", prediction_type="epsilon")
    comps = build_refiner()
    StableDiffusionXLImg2ImgPipeline(**comps, text_encoder=None, tokenizer=None, scheduler=_sched(),
                                     requires_aesthetics_score=True, force_zeros_for_empty_prompt=False
                                     ).save_pretrained(tmp_path / "refiner")
    rec = engine.store.add(tmp_path / "refiner", model_id="xl-refiner")
    return base, comps, rec


def _bare(base, comps, steps, switch, seed, cfg, prompt, size, init=None, strength=0.75):
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    kw = dict(num_inference_steps=steps, guidance_scale=cfg)
    g = [torch.Generator().manual_seed(seed)]
    if init is None:
        first = StableDiffusionXLPipeline(**base, scheduler=_sched())
        lat = first(prompt, width=size, height=size, denoising_end=switch, output_type="latent", generator=g,
                    **kw).images
    else:
        first = StableDiffusionXLImg2ImgPipeline(**base, scheduler=_sched())
        lat = first(prompt, image=init, strength=strength, denoising_end=switch, output_type="latent", generator=g,
                    **kw).images
    second = StableDiffusionXLImg2ImgPipeline(**comps, text_encoder=None, tokenizer=None, scheduler=_sched(),
                                              requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)
    for p in (first, second):
        p.set_progress_bar_config(disable=True)
    return second(prompt, image=lat, denoising_start=switch, generator=g, **kw).images[0]


def test_the_store_recognises_refiners(engine, xl, tmp_path):
    _, comps, rec = xl
    assert (rec.kind, rec.family) == ("refiner", "sdxl")
    save_file(refiner_to_ldm(comps), str(tmp_path / "refiner.safetensors"))
    single = engine.store.add(tmp_path / "refiner.safetensors", prediction_type="epsilon")
    assert (single.kind, single.format) == ("refiner", "single_file")
    assert [r.id for r in engine.store.list()] == ["solvent-tiny", "xl"]  # not a model that makes images alone
    assert engine.fits(engine.store.get("xl"))["refiners"] == ["refiner", "xl-refiner"]
    assert engine.fits(engine.store.get("solvent-tiny"))["refiners"] == []
    with pytest.raises(ValidationFailed) as e:
        engine.generate(GenerationRequest(model="xl-refiner", prompt="x"))
    assert "`refiner`" in e.value.message


@pytest.mark.parametrize("layout", ["folder", "single_file"])
def test_refined_txt2img_equals_diffusers_ensemble_of_experts(engine, xl, tmp_path, layout):
    base, comps, rec = xl
    name = rec.id
    if layout == "single_file":
        save_file(refiner_to_ldm(comps), str(tmp_path / "r.safetensors"))
        name = engine.store.add(tmp_path / "r.safetensors", prediction_type="epsilon").id
    req = GenerationRequest(model="xl", prompt="a red circle", steps=4, seed=7, width=256, height=256,
                            sampler="euler", cfg_scale=5.0, refiner=name, refiner_switch=0.75)
    out = engine.generate(req)
    ref = _bare(base, comps, 4, 0.75, 7, 5.0, "a red circle", 256)
    assert np.abs(np.asarray(out.images[0]).astype(int) - np.asarray(ref).astype(int)).max() <= 1
    assert out.usage.steps_run == 4  # three steps of the base, one of the refiner
    plain = engine.generate(GenerationRequest(model="xl", prompt="a red circle", steps=4, seed=7, width=256,
                                              height=256, sampler="euler", cfg_scale=5.0))
    early = engine.generate(GenerationRequest(model="xl", prompt="a red circle", steps=4, seed=7, width=256,
                                              height=256, sampler="euler", cfg_scale=5.0, refiner=name,
                                              refiner_switch=0.25))  # the refiner draws three steps of four
    assert np.abs(np.asarray(early.images[0]).astype(int) - np.asarray(plain.images[0]).astype(int)).max() > 5
    assert f"Refiner: {name} [" in out.infotexts[0] and "Refiner switch at: 0.75" in out.infotexts[0]


def test_refined_img2img_equals_diffusers(engine, xl):
    base, comps, rec = xl
    init = Image.new("RGB", (256, 256), "orange")
    out = engine.generate(GenerationRequest(model="xl", prompt="x", steps=6, seed=3, width=256, height=256,
                                            sampler="euler", cfg_scale=4.0, init_image=init, strength=0.8,
                                            refiner=rec.id, refiner_switch=0.6))
    ref = _bare(base, comps, 6, 0.6, 3, 4.0, "x", 256, init=init, strength=0.8)
    assert np.abs(np.asarray(out.images[0]).astype(int) - np.asarray(ref).astype(int)).max() <= 1


def test_bad_refiners_name_the_field(engine, xl):
    _, _, rec = xl
    for kw, field, words in (
            ({"refiner": "xl"}, "refiner", "not an SDXL refiner"),
            ({"refiner": rec.id, "refiner_switch": 1.0}, "refiner_switch", "between 0 and 1"),
            ({"refiner": rec.id, "model": "solvent-tiny"}, "refiner", "refines SDXL images")):
        with pytest.raises((ValidationFailed, IncompatibleAdapter)) as e:
            engine.generate(GenerationRequest(**{"model": "xl", "prompt": "x", "steps": 2, "width": 256,
                                                 "height": 256, **kw}))
        assert e.value.field == field and words in e.value.message, e.value.message
