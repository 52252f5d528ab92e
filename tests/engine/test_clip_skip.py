"""CLIP skip as A1111 counts it (1 = the last layer), equal to diffusers' `clip_skip` (which counts from 0)."""

import numpy as np
import pytest
import torch

from solvent.errors import ValidationFailed
from solvent.generation import GenerationRequest


def test_embeddings_are_the_earlier_layer_through_the_final_norm(engine):
    # diffusers' own `clip_skip` path reads `text_encoder.text_model`, which transformers 5 no longer has, so the
    # reference is its definition: hidden state -(clip_skip) of the padded prompt, through the final layer norm.
    lm = engine.load("solvent-tiny")
    ours, _ = lm.encoder.encode_pair("a red circle", "", engine.device, clip_skip=2)
    tok, te = lm.pipe.tokenizer, lm.pipe.text_encoder
    ids = tok("a red circle", padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        theirs = te.final_layer_norm(te(ids, output_hidden_states=True).hidden_states[-2])
    assert torch.allclose(ours.embeds, theirs, atol=1e-6)
    plain, _ = lm.encoder.encode_pair("a red circle", "", engine.device)
    assert not torch.allclose(plain.embeds, ours.embeds)


def test_clip_skip_changes_the_image_and_is_recorded(engine):
    base = dict(prompt="a red circle", seed=3, steps=4)
    one, two = (engine.generate(GenerationRequest(**base, clip_skip=n)) for n in (1, 2))
    assert not np.array_equal(np.asarray(one.images[0]), np.asarray(two.images[0]))
    assert "Clip skip: 2" in two.infotexts[0] and "Clip skip" not in one.infotexts[0]
    assert two.params["clip_skip"] == 2


@pytest.mark.parametrize("bad", [0, 3, "2", True])
def test_out_of_range_clip_skip_names_the_layers(engine, bad):
    with pytest.raises(ValidationFailed) as e:
        engine.generate(GenerationRequest(prompt="x", steps=2, clip_skip=bad))
    assert e.value.field == "clip_skip" and "between 1 and 2" in e.value.message
