"""Encoding chunked, weighted prompts with a pipeline's text encoder."""

import torch

from solvent.engine.prompts import PromptEncoder


def test_unweighted_prompt_encodes_exactly_like_diffusers(engine):
    lm = engine.load("solvent-tiny")
    pos, neg = lm.encoder.encode_pair("a red circle", "", engine.device)
    ref_pos, ref_neg = lm.pipe.encode_prompt("a red circle", engine.device, 1, True, "")
    assert torch.equal(pos.embeds, ref_pos) and torch.equal(neg.embeds, ref_neg)


def test_weights_scale_token_embeddings(engine):
    lm = engine.load("solvent-tiny")
    enc = PromptEncoder(lm.pipe, "sd", 3)
    plain = enc.encode(enc.chunks("a red circle", "prompt"), 1, engine.device).embeds
    weighted = enc.encode(enc.chunks("a (red:1.5) circle", "prompt"), 1, engine.device).embeds
    assert plain.shape == weighted.shape == (1, 77, 64)
    assert not torch.equal(plain, weighted)
    assert torch.allclose(plain.mean(), weighted.mean(), atol=1e-5)  # mean restored, as A1111 does
