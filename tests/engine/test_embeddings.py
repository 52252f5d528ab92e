"""Textual-inversion embeddings written in A1111's and diffusers' layouts: recognised by the store, used by
name in a prompt, equal to the bare pipeline with the same embedding loaded."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from solvent.generation import GenerationRequest


def _vectors(n: int, seed: int = 7) -> torch.Tensor:
    return torch.randn(n, 64, generator=torch.Generator().manual_seed(seed)) * 0.5  # solvent-tiny's width: 64


@pytest.fixture
def shiny(engine, tmp_path):
    save_file({"emb_params": _vectors(2)}, str(tmp_path / "shinything.safetensors"))  # A1111, two vectors
    return engine.store.add(tmp_path / "shinything.safetensors")


def test_the_store_recognises_embeddings(engine, shiny, tmp_path):
    assert (shiny.id, shiny.kind, shiny.architecture, shiny.cross_attention_dim) == ("shinything", "embedding",
                                                                                      "sd", 64)
    save_file({"<glow>": _vectors(1)[0]}, str(tmp_path / "glow.safetensors"))  # diffusers: one key, the token
    assert engine.store.add(tmp_path / "glow.safetensors").kind == "embedding"
    save_file({"clip_l": torch.zeros(2, 768), "clip_g": torch.zeros(2, 1280)}, str(tmp_path / "xl.safetensors"))
    xl = engine.store.add(tmp_path / "xl.safetensors")
    assert (xl.architecture, xl.cross_attention_dim) == ("sdxl", 2048)
    assert [e.id for e in engine.embeddings_for(engine.store.get("solvent-tiny"))] == ["glow", "shinything"]


def test_a_prompt_that_names_it_equals_the_bare_pipeline_with_it(engine, shiny, tmp_path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    base = dict(seed=4, steps=4, sampler="euler", cfg_scale=2.0)
    ours = engine.generate(GenerationRequest(prompt="a shinything circle", **base))
    plain = engine.generate(GenerationRequest(prompt="a red circle", **base))
    assert "TI hashes: \"shinything: " in ours.infotexts[0] and "TI hashes" not in plain.infotexts[0]

    from solvent.tiny import weights_dir

    lm = engine.load("solvent-tiny")
    bare = StableDiffusionPipeline.from_pretrained(str(weights_dir()), local_files_only=True, safety_checker=None,
                                                   torch_dtype=torch.float32,
                                                   feature_extractor=None, requires_safety_checker=False,
                                                   tokenizer=type(lm.pipe.tokenizer).from_pretrained(
                                                       lm.pipe.tokenizer.name_or_path))
    bare.load_textual_inversion(_vectors(2), token="shinything")
    bare.scheduler = EulerDiscreteScheduler.from_config(lm.scheduler_config)
    theirs = bare("a shinything circle", negative_prompt="", num_inference_steps=4, guidance_scale=2.0, width=64,
                  height=64, generator=[torch.Generator("cpu").manual_seed(4)]).images[0]
    a = np.asarray(ours.images[0]).astype(int)
    assert np.abs(a - np.asarray(theirs).astype(int)).max() <= 1
    assert np.abs(a - np.asarray(plain.images[0]).astype(int)).max() > 10
    # a prompt that does not name it is unchanged by its being loaded
    again = engine.generate(GenerationRequest(prompt="a red circle", **base))
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(plain.images[0]))


def test_an_sdxl_embedding_and_vae_on_an_sdxl_checkpoint_equal_the_bare_pipeline(engine, tmp_path):
    """An SDXL embedding (`clip_l` + `clip_g`, A1111's layout) named in the prompt and a VAE from the store, on a
    single-file SDXL checkpoint: Solvent's image equals diffusers' SDXL pipeline with both loaded."""
    import copy

    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    from solvent.generation.families import shipped_config
    from tests.tiny_models import write_checkpoint

    comps = write_checkpoint("sdxl", tmp_path / "xl.safetensors")
    engine.store.add(tmp_path / "xl.safetensors", model_id="xl", prediction_type="epsilon")
    g = torch.Generator().manual_seed(3)
    vec = {"clip_l": torch.randn(2, 32, generator=g), "clip_g": torch.randn(2, 64, generator=g)}
    save_file(vec, str(tmp_path / "xlshine.safetensors"))
    emb = engine.store.add(tmp_path / "xlshine.safetensors")
    assert (emb.architecture, emb.cross_attention_dim) == ("sdxl", 96)
    vae = copy.deepcopy(comps["vae"])
    with torch.no_grad():
        vae.decoder.conv_out.bias += 0.3  # a visibly different decoder
    vae.save_pretrained(tmp_path / "xl-vae", safe_serialization=True)
    engine.store.add(tmp_path / "xl-vae", model_id="xl-vae")
    assert engine.fits(engine.store.get("xl"))["embeddings"] == ["xlshine"]
    kw = dict(model="xl", seed=5, steps=3, sampler="euler", cfg_scale=4.0, width=256, height=256)
    ours = engine.generate(GenerationRequest(prompt="a xlshine circle", vae="xl-vae", **kw))
    assert "xlshine: " in ours.infotexts[0] and "VAE: xl-vae" in ours.infotexts[0]

    bare = StableDiffusionXLPipeline(**{**comps, "vae": vae}, scheduler=EulerDiscreteScheduler.from_config(
        shipped_config("sdxl", "scheduler"), prediction_type="epsilon"))
    bare.set_progress_bar_config(disable=True)
    bare.load_textual_inversion(vec["clip_l"], token="xlshine", text_encoder=bare.text_encoder,
                                tokenizer=bare.tokenizer)
    bare.load_textual_inversion(vec["clip_g"], token="xlshine", text_encoder=bare.text_encoder_2,
                                tokenizer=bare.tokenizer_2)
    theirs = bare("a xlshine circle", num_inference_steps=3, guidance_scale=4.0, width=256, height=256,
                  generator=[torch.Generator().manual_seed(5)]).images[0]
    assert np.abs(np.asarray(ours.images[0]).astype(int) - np.asarray(theirs).astype(int)).max() <= 1
    plain = engine.generate(GenerationRequest(prompt="a xlshine circle", **kw))
    assert np.abs(np.asarray(ours.images[0]).astype(int) - np.asarray(plain.images[0]).astype(int)).max() > 10
