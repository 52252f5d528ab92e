"""Prompt weighting in AUTOMATIC1111's syntax, and encoding prompts of any length in 75-token chunks.

Syntax: `(word)` ×1.1, `((word))` ×1.21, `[word]` ÷1.1, `(word:1.5)` ×1.5, `\\(` a literal
bracket, `BREAK` starts a new 75-token chunk. Unweighted prompts encode exactly as diffusers does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import ValidationFailed

_TOKEN = re.compile(
    r"""
    \\[()\[\]\\] |            # escaped bracket or backslash
    \\ |                      # a lone backslash
    \( | \[ |                 # openers
    :\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\) |  # explicit weight closing a round bracket (one number)
    \) | \] |                 # closers
    [^\\()\[\]:]+ |           # plain text
    :                         # a colon that is not a weight
    """,
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
UP, DOWN = 1.1, 1 / 1.1
CHUNK = 75


MAX_WEIGHT = 100.0  # |explicit weight| beyond this is refused (A1111 users stay within ±10)


def parse_weights(text: str) -> list[tuple[str, float]]:
    """Split `text` into (fragment, weight) pairs; `("BREAK", -1)` marks a forced chunk break.

    Linear in the text: each bracket pair records (first part, end part, factor) and the weights are
    computed once at the end with a running product over the parts, instead of re-scaling every part
    inside a bracket each time one closes. Raises `ValueError` for an explicit weight beyond ±`MAX_WEIGHT`.
    """
    parts: list[list] = []
    rounds: list[int] = []
    squares: list[int] = []
    marks: list[tuple[int, int, float]] = []  # per bracket: (first part, end part, factor)

    def scale(start: int, factor: float) -> None:
        marks.append((start, len(parts), factor))

    for m in _TOKEN.finditer(text):
        tok, weight = m.group(0), m.group(1)
        if tok.startswith("\\") and len(tok) == 2:
            parts.append([tok[1], 1.0])
        elif tok == "(":
            rounds.append(len(parts))
        elif tok == "[":
            squares.append(len(parts))
        elif weight is not None and rounds:
            w = float(weight)
            if not abs(w) <= MAX_WEIGHT:
                raise ValueError(f"the weight {weight[:20]} is beyond ±{MAX_WEIGHT:g}")
            scale(rounds.pop(), w)
        elif tok == ")" and rounds:
            scale(rounds.pop(), UP)
        elif tok == "]" and squares:
            scale(squares.pop(), DOWN)
        else:
            for i, piece in enumerate(_BREAK.split(tok)):
                if i:
                    parts.append(["BREAK", -1.0])
                parts.append([piece, 1.0])
    for start in rounds:
        scale(start, UP)
    for start in squares:
        scale(start, DOWN)
    # Each mark multiplies the parts in [start, end). A running product with one multiply at `start` and one
    # divide at `end` is linear; zero factors are counted apart so that dividing never divides by zero.
    mul = [1.0] * (len(parts) + 1)
    zeros = [0] * (len(parts) + 1)
    for start, end, factor in marks:
        if start >= end:
            continue
        if factor == 0:
            zeros[start] += 1
            zeros[end] -= 1
        else:
            mul[start] *= factor
            mul[end] /= factor
    product, zero = 1.0, 0
    for i, p in enumerate(parts):
        product *= mul[i]
        zero += zeros[i]
        if p[1] >= 0:
            p[1] = 0.0 if zero else round(product, 12)
    merged: list[tuple[str, float]] = []
    for frag, w in parts:
        if merged and merged[-1][1] == w and w >= 0:
            merged[-1] = (merged[-1][0] + frag, w)
        elif frag or w < 0:
            merged.append((frag, w))
    return merged or [("", 1.0)]


@dataclass
class Chunks:
    ids: list[list[int]]  # each CHUNK tokens or fewer, no BOS/EOS
    weights: list[list[float]]

    @property
    def weighted(self) -> bool:
        return any(w != 1.0 for ws in self.weights for w in ws)


def chunk_prompt(tokenizer, text: str, max_chunks: int, field: str = "prompt") -> Chunks:
    """Tokenise `text` with weights into 75-token chunks (at most `max_chunks`)."""
    ids: list[list[int]] = [[]]
    weights: list[list[float]] = [[]]
    total = 0
    try:
        pieces = parse_weights(text)
    except ValueError as e:
        raise ValidationFailed(f"`{field}` has a bad weight: {e}.", field=field) from e
    for frag, w in pieces:
        if w < 0:  # BREAK
            if ids[-1]:
                ids.append([])
                weights.append([])
            continue
        toks = tokenizer(frag, add_special_tokens=False, truncation=False).input_ids
        for t in toks:
            if len(ids[-1]) == CHUNK:
                ids.append([])
                weights.append([])
            ids[-1].append(t)
            weights[-1].append(w)
        total += len(toks)
    if len(ids) > max_chunks:
        raise ValidationFailed(
            f"`{field}` is too long: {total} tokens, at most {CHUNK * max_chunks} are allowed.",
            field=field,
            value=f"{total} tokens",
        )
    return Chunks(ids, weights)


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


@dataclass
class Encoded:
    embeds: torch.Tensor  # [1, 77 * chunks, dim]
    pooled: torch.Tensor | None  # SDXL only: [1, proj_dim]


class PromptEncoder:
    """Encodes prompts for one pipeline's text encoder(s)."""

    def __init__(self, pipe, architecture: str, max_chunks: int):
        self.pipe = pipe
        self.xl = architecture == "sdxl"
        self.max_chunks = max_chunks

    def chunks(self, text: str, field: str) -> Chunks:
        return chunk_prompt(self.pipe.tokenizer, text, self.max_chunks, field)

    @torch.no_grad()
    def encode(self, chunks: Chunks, n_chunks: int, device: torch.device) -> Encoded:
        ids = chunks.ids + [[]] * (n_chunks - len(chunks.ids))
        ws = chunks.weights + [[]] * (n_chunks - len(chunks.weights))
        outs, pooled = [], None
        for i, (chunk, w) in enumerate(zip(ids, ws, strict=True)):
            if self.xl:
                parts = []
                for tok, te in ((self.pipe.tokenizer, self.pipe.text_encoder), (self.pipe.tokenizer_2, self.pipe.text_encoder_2)):
                    padded, weights = _pad(tok, chunk, w)
                    out = te(torch.tensor([padded], device=device), output_hidden_states=True)
                    z = out.hidden_states[-2]
                    if chunks.weighted:
                        z = _reweight(z, torch.tensor(weights, device=device))
                    parts.append(z)
                    if te is self.pipe.text_encoder_2 and i == 0:
                        pooled = out[0]
                outs.append(torch.cat(parts, dim=-1))
            else:
                padded, weights = _pad(self.pipe.tokenizer, chunk, w)
                z = self.pipe.text_encoder(torch.tensor([padded], device=device))[0]
                if chunks.weighted:
                    z = _reweight(z, torch.tensor(weights, device=device))
                outs.append(z)
        return Encoded(torch.cat(outs, dim=1), pooled)

    def chunk_count(self, prompt: str, negative: str) -> int:
        """How many 77-token chunks the pair encodes to (requests batch together at the largest count)."""
        return max(len(self.chunks(prompt, "prompt").ids), len(self.chunks(negative, "negative_prompt").ids))

    def encode_pair(self, prompt: str, negative: str, device: torch.device,
                    at_least: int = 0) -> tuple[Encoded, Encoded]:
        pos, neg = self.chunks(prompt, "prompt"), self.chunks(negative, "negative_prompt")
        n = max(len(pos.ids), len(neg.ids), at_least)
        p = self.encode(pos, n, device)
        if self.xl and not negative and getattr(self.pipe.config, "force_zeros_for_empty_prompt", True):
            return p, Encoded(torch.zeros_like(p.embeds), torch.zeros_like(p.pooled))
        return p, self.encode(neg, n, device)
