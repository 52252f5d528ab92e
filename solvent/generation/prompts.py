"""Prompt syntax: AUTOMATIC1111's weights, and prompts of any length cut into 75-token chunks (no torch).

Syntax: `(word)` ×1.1, `((word))` ×1.21, `[word]` ÷1.1, `(word:1.5)` ×1.5, `\\(` a literal
bracket, `BREAK` starts a new 75-token chunk. Encoding the chunks is the engine's (`engine.prompts.PromptEncoder`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

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


def chunk_prompt(encode: Callable[[str], list[int]], text: str, max_chunks: int, field: str = "prompt") -> Chunks:
    """Tokenise `text` with weights into 75-token chunks (at most `max_chunks`).

    `encode` turns text into token ids without start/end tokens (`tokens.clip_encode` for counting, the
    model's own tokenizer for encoding)."""
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
        toks = encode(frag)
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


def plain_prompt(text: str) -> str:
    """The text of a weighted prompt without its syntax (`(cat:1.3)` → `cat`, `BREAK` → a space): what encoders
    without per-token weighting (T5, and so SD3 and Flux) read."""
    try:
        parts = parse_weights(text)
    except ValueError:
        return text
    return "".join(" " if w == -1 and frag == "BREAK" else frag for frag, w in parts).strip()


def is_weighted(text: str) -> bool:
    """Whether a prompt uses weight syntax (a fragment weighted other than 1)."""
    try:
        return any(w not in (1.0, -1.0) for _, w in parse_weights(text))
    except ValueError:
        return False
