"""Encoding weighted prompts of any length (chunked by `generation.prompts`) with a pipeline's text encoder(s).

Unweighted prompts encode exactly as diffusers does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..generation.prompts import Chunks, chunk_prompt


def _pad(tokenizer, chunk: list[int], weights: list[float]) -> tuple[list[int], list[float]]:
    n = tokenizer.model_max_length
    ids = [tokenizer.bos_token_id, *chunk, tokenizer.eos_token_id]
    w = [1.0, *weights, 1.0]
    pad = tokenizer.pad_token_id
    return ids + [pad] * (n - len(ids)), w + [1.0] * (n - len(w))


def _reweight(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Scale each token's embedding by its weight, then restore the original mean (as A1111 does)."""
    before = z.float().mean()
    z = z * w.to(z.dtype)[None, :, None]
    after = z.float().mean()
    return z * (before / after).to(z.dtype) if after != 0 else z


def _final_norm(text_encoder):
    """The CLIP text model's final layer norm (transformers 5 holds it on the model, earlier ones on `text_model`)."""
    norm = getattr(text_encoder, "final_layer_norm", None)
    return norm if norm is not None else text_encoder.text_model.final_layer_norm


@dataclass
class Encoded:
    embeds: torch.Tensor  # [1, 77 * chunks, dim]
    pooled: torch.Tensor | None  # SDXL only: [1, proj_dim]


class PromptEncoder:
    """Encodes prompts for one pipeline's text encoder(s)."""

    def __init__(self, pipe, architecture: str, max_chunks: int):
        """`architecture` "sd", "sdxl", or "sdxl-refiner" (SDXL's refiner reads its OpenCLIP encoder alone)."""
        self.pipe = pipe
        self.xl = architecture in ("sdxl", "sdxl-refiner")
        self.max_chunks = max_chunks
        if architecture == "sdxl-refiner":
            self.pairs = [(pipe.tokenizer_2, pipe.text_encoder_2)]
        elif self.xl:
            self.pairs = [(pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)]
        else:
            self.pairs = [(pipe.tokenizer, pipe.text_encoder)]

    def chunks(self, text: str, field: str) -> Chunks:
        tok = self.pairs[0][0]
        # An embedding of several vectors is named once and expands to `name name_1 …` (diffusers' convention).
        convert = getattr(self.pipe, "maybe_convert_prompt", None) if len(tok.added_tokens_encoder) > 2 else None

        def encode(t: str) -> list[int]:
            return tok(convert(t, tok) if convert else t, add_special_tokens=False, truncation=False).input_ids

        return chunk_prompt(encode, text, self.max_chunks, field)

    @torch.no_grad()
    def encode(self, chunks: Chunks, n_chunks: int, device: torch.device, clip_skip: int = 1) -> Encoded:
        """`clip_skip` as A1111 counts it: 1 = the last layer, 2 = the one before it (diffusers' `clip_skip` = this - 1;
        SDXL always reads the penultimate layer and goes `clip_skip - 1` further back)."""
        ids = chunks.ids + [[]] * (n_chunks - len(chunks.ids))
        ws = chunks.weights + [[]] * (n_chunks - len(chunks.weights))
        outs, pooled = [], None
        for i, (chunk, w) in enumerate(zip(ids, ws, strict=True)):
            if self.xl:
                parts = []
                for tok, te in self.pairs:
                    padded, weights = _pad(tok, chunk, w)
                    out = te(torch.tensor([padded], device=device), output_hidden_states=True)
                    z = out.hidden_states[-(clip_skip + 1)]
                    if chunks.weighted:
                        z = _reweight(z, torch.tensor(weights, device=device))
                    parts.append(z)
                    if te is self.pipe.text_encoder_2 and i == 0:
                        pooled = out[0]
                outs.append(torch.cat(parts, dim=-1))
            else:
                padded, weights = _pad(self.pipe.tokenizer, chunk, w)
                if clip_skip == 1:
                    z = self.pipe.text_encoder(torch.tensor([padded], device=device))[0]
                else:  # an earlier layer, through the final layer norm (as A1111 and diffusers do)
                    out = self.pipe.text_encoder(torch.tensor([padded], device=device), output_hidden_states=True)
                    z = _final_norm(self.pipe.text_encoder)(out.hidden_states[-clip_skip])
                if chunks.weighted:
                    z = _reweight(z, torch.tensor(weights, device=device))
                outs.append(z)
        return Encoded(torch.cat(outs, dim=1), pooled)

    def chunk_count(self, prompt: str, negative: str) -> int:
        """How many 77-token chunks the pair encodes to (requests batch together at the largest count)."""
        return max(len(self.chunks(prompt, "prompt").ids), len(self.chunks(negative, "negative_prompt").ids))

    def encode_pair(self, prompt: str, negative: str, device: torch.device,
                    at_least: int = 0, clip_skip: int = 1) -> tuple[Encoded, Encoded]:
        pos, neg = self.chunks(prompt, "prompt"), self.chunks(negative, "negative_prompt")
        n = max(len(pos.ids), len(neg.ids), at_least)
        p = self.encode(pos, n, device, clip_skip)
        if self.xl and not negative and getattr(self.pipe.config, "force_zeros_for_empty_prompt", True):
            return p, Encoded(torch.zeros_like(p.embeds), torch.zeros_like(p.pooled))
        return p, self.encode(neg, n, device, clip_skip)


@torch.no_grad()
def sd3_reweight(pipe, embeds: torch.Tensor, row: int, text: str, clip_skip: int, max_chunks: int,
                 device: torch.device) -> None:
    """Weight one row of SD3 prompt embeddings as AUTOMATIC1111 weights CLIP's: the CLIP-L and CLIP-G token states
    (the first 77 positions, zero-padded to T5's width) are recomputed from the prompt's own tokens and scaled by
    their weights with the mean restored; T5's states (the rest) stay unweighted, as T5 has no such weighting.
    SD3 reads one 77-token CLIP window, so weights past it have no effect (as on the unweighted path)."""
    chunks = chunk_prompt(lambda t: pipe.tokenizer(t, add_special_tokens=False, truncation=False).input_ids, text,
                          max_chunks)
    if not chunks.weighted:
        return
    ids, weights = (chunks.ids[0], chunks.weights[0]) if chunks.ids else ([], [])
    parts = []
    for tok, te in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
        padded, w = _pad(tok, ids, weights)
        out = te(torch.tensor([padded], device=device), output_hidden_states=True)
        parts.append(out.hidden_states[-(clip_skip + 1)])  # diffusers' SD3: the penultimate layer at clip skip 1
    z = _reweight(torch.cat(parts, dim=-1), torch.tensor(w, device=device))[0]
    width = min(z.shape[-1], embeds.shape[-1])
    embeds[row, :z.shape[0], :width] = z[:, :width].to(embeds.dtype)
