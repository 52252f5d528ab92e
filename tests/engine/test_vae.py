"""VAEs from the store: recognised in the layouts people download, used per request or as a model's default,
equal to the bare pipeline with that VAE, and refused when their latents do not fit the model."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from solvent.errors import IncompatibleAdapter, ModelNotFound, ValidationFailed
from solvent.generation import GenerationRequest
from solvent.tiny import weights_dir
from tests.ldm_layout import vae_to_ldm
from tests.tiny_models import build


def _tweaked_vae():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(weights_dir() / "vae"))
    with torch.no_grad():
        vae.decoder.conv_out.bias.add_(0.3)  # a visibly different decoder: everything brighter
    return vae


@pytest.fixture
def vae(engine, tmp_path):
    v = _tweaked_vae()
    v.save_pretrained(tmp_path / "vae-folder", safe_serialization=True)
    return v, engine.store.add(tmp_path / "vae-folder", model_id="bright-vae")


def test_the_store_recognises_vae_folders_and_files(engine, vae, tmp_path):
    v, record = vae
    assert (record.kind, record.latent_channels) == ("vae", 8)
    save_file({k: t.contiguous() for k, t in v.state_dict().items()}, str(tmp_path / "d.safetensors"))
    ldm = vae_to_ldm(v.state_dict(), dict(v.config))  # as a standalone VAE file holds it: no checkpoint prefix
    save_file({k.removeprefix("first_stage_model."): t for k, t in ldm.items()}, str(tmp_path / "ldm.safetensors"))
    for name in ("d", "ldm"):
        r = engine.store.add(tmp_path / f"{name}.safetensors", model_id=f"vae-{name}")
        assert (r.kind, r.latent_channels, r.format) == ("vae", 8, "single_file")
    assert {r.id for r in engine.store.list("vae")} == {"bright-vae", "vae-d", "vae-ldm"}


def test_a_requested_vae_decodes_as_the_bare_pipeline_with_it(engine, vae, tmp_path):
    v, record = vae
    base = dict(prompt="a red circle", seed=2, steps=4, sampler="euler", cfg_scale=2.0)
    ours = engine.generate(GenerationRequest(**base, vae="bright-vae"))
    own = engine.generate(GenerationRequest(**base))
    lm = engine.load("solvent-tiny")
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    bare = StableDiffusionPipeline(vae=v, text_encoder=lm.pipe.text_encoder, tokenizer=lm.pipe.tokenizer,
                                   unet=lm.pipe.unet, scheduler=EulerDiscreteScheduler.from_config(lm.scheduler_config),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    theirs = bare("a red circle", negative_prompt="", num_inference_steps=4, guidance_scale=2.0, width=64, height=64,
                  generator=[torch.Generator("cpu").manual_seed(2)]).images[0]
    a = np.asarray(ours.images[0]).astype(int)
    assert np.abs(a - np.asarray(theirs).astype(int)).max() <= 1
    assert a.mean() > np.asarray(own.images[0]).astype(int).mean() + 10  # the bright decoder was used
    assert "VAE: bright-vae" in ours.infotexts[0] and ours.params["vae"] == "bright-vae"
    # the model's own VAE is back for the next request
    again = engine.generate(GenerationRequest(**base))
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(own.images[0]))
    # every layout decodes the same
    save_file({k: t.contiguous() for k, t in v.state_dict().items()}, str(tmp_path / "d.safetensors"))
    engine.store.add(tmp_path / "d.safetensors", model_id="vae-file")
    ldm = vae_to_ldm(v.state_dict(), dict(v.config))
    save_file({k.removeprefix("first_stage_model."): t for k, t in ldm.items()}, str(tmp_path / "ldm.safetensors"))
    engine.store.add(tmp_path / "ldm.safetensors", model_id="vae-ldm")
    for name in ("vae-file", "vae-ldm"):
        same = engine.generate(GenerationRequest(**base, vae=name))
        assert np.abs(np.asarray(same.images[0]).astype(int) - a).max() <= 1, name


def test_bad_vaes_name_the_field(engine, vae, tmp_path):
    with pytest.raises(ModelNotFound) as e:
        engine.generate(GenerationRequest(prompt="x", steps=2, vae="missing"))
    assert e.value.field == "vae"
    with pytest.raises(ValidationFailed) as e:
        engine.generate(GenerationRequest(prompt="x", steps=2, vae="solvent-tiny"))
    assert e.value.field == "vae" and "not a VAE" in e.value.message
    sd = build("sd1")["vae"]  # 4 latent channels: Stable Diffusion's, not solvent-tiny's 8
    sd.save_pretrained(tmp_path / "sd-vae", safe_serialization=True)
    engine.store.add(tmp_path / "sd-vae", model_id="sd-vae")
    with pytest.raises(IncompatibleAdapter) as e:
        engine.generate(GenerationRequest(prompt="x", steps=2, vae="sd-vae"))
    assert "4 latent channels" in e.value.message and "'solvent-tiny'" in e.value.message
