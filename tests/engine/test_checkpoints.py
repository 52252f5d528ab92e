"""Single-file checkpoints in the real SD 1.x / SD 2.x / SDXL key layouts, loaded offline."""

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
from safetensors.torch import save_file

from solvent.engine.checkpoint import SD1_CLIP, inspect_checkpoint, load_components
from solvent.errors import CorruptCheckpoint, UnsafeCheckpoint, UnsupportedModel
from solvent.generation import GenerationRequest
from solvent.generation.families import shipped_config
from tests.tiny_models import build, to_ldm, write_checkpoint

FAMILIES = ["sd1", "sd2", "sdxl"]
SIZE = {"sd1": 64, "sd2": 64, "sdxl": 256}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_is_recognised_from_keys(tmp_path, family):
    write_checkpoint(family, tmp_path / "m.safetensors")
    info = inspect_checkpoint(tmp_path / "m.safetensors")
    assert info.family == family
    assert not info.inpainting


@pytest.mark.parametrize("family", FAMILIES)
def test_components_round_trip_exactly(tmp_path, family):
    comps = write_checkpoint(family, tmp_path / "m.safetensors")
    loaded = load_components(tmp_path / "m.safetensors", family, 512)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if name in comps:
            a, b = comps[name].state_dict(), loaded[name].state_dict()
            assert set(a) == set(b), name
            assert all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_generates_what_diffusers_generates(tmp_path, engine, family):
    """Solvent's images from the single file == a bare diffusers pipeline built from the same weights."""
    comps = write_checkpoint(family, tmp_path / "m.safetensors")
    engine.store.add(tmp_path / "m.safetensors", model_id="m", prediction_type="epsilon")
    size = SIZE[family]
    ours = engine.generate(
        GenerationRequest(prompt="a red circle", model="m", steps=3, seed=7, width=size, height=size, sampler="euler",
                          cfg_scale=5.0)
    )
    sched = EulerDiscreteScheduler.from_config(shipped_config(family, "scheduler"), prediction_type="epsilon")
    if family == "sdxl":
        pipe = StableDiffusionXLPipeline(**comps, scheduler=sched)
    else:
        pipe = StableDiffusionPipeline(**comps, scheduler=sched, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe("a red circle", num_inference_steps=3, guidance_scale=5.0, width=size, height=size,
               generator=[torch.Generator().manual_seed(7)]).images[0]
    diff = np.abs(np.asarray(ours.images[0]).astype(int) - np.asarray(ref).astype(int)).max()
    assert diff <= 1, diff
    assert ours.usage.model_id == "m" and ours.params["model"] == "m"


def test_sd2_defaults_to_v_prediction(tmp_path, engine):
    write_checkpoint("sd2", tmp_path / "m.safetensors")
    rec = engine.store.add(tmp_path / "m.safetensors", model_id="v")
    assert rec.prediction_type == "v_prediction" and rec.native_resolution == 768


def test_pickle_checkpoint_is_refused_without_the_unsafe_flag(tmp_path, engine):
    comps = build("sd1")
    torch.save({"state_dict": to_ldm("sd1", comps)}, tmp_path / "m.ckpt")
    with pytest.raises(UnsafeCheckpoint) as e:
        engine.store.add(tmp_path / "m.ckpt")
    assert "arbitrary code" in e.value.message and e.value.field == "path"
    rec = engine.store.add(tmp_path / "m.ckpt", allow_pickle=True, model_id="pk")
    out = engine.generate(GenerationRequest(prompt="x", model=rec.id, steps=2, width=64, height=64))
    assert out.images[0].size == (64, 64)


def test_truncated_checkpoint_is_a_clear_error(tmp_path, engine):
    write_checkpoint("sd1", tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "bad.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpoint) as e:
        engine.store.add(tmp_path / "bad.safetensors")
    assert "bad.safetensors" in e.value.message
    assert not any(p.name.startswith(".tmp") for p in engine.store.root.glob("*")) if engine.store.root.exists() else True


def test_garbage_file_is_a_clear_error(tmp_path, engine):
    (tmp_path / "g.safetensors").write_bytes(b"\x00\x01not a checkpoint at all")
    with pytest.raises(CorruptCheckpoint):
        engine.store.add(tmp_path / "g.safetensors")


def test_missing_tensors_are_reported(tmp_path):
    sd = to_ldm("sd1", build("sd1"))
    del sd[f"{SD1_CLIP}final_layer_norm.weight"]
    save_file(sd, str(tmp_path / "m.safetensors"))
    with pytest.raises(CorruptCheckpoint) as e:
        load_components(tmp_path / "m.safetensors", "sd1", 512)
    assert "missing" in e.value.message


def test_a_lora_is_not_a_model(tmp_path, engine):
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(4, 8)}, str(tmp_path / "l.safetensors"))
    with pytest.raises(UnsupportedModel) as e:
        engine.store.add(tmp_path / "l.safetensors")
    assert "LoRA" in e.value.message
