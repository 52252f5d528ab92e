"""Textual-inversion embeddings: a few learned word vectors, used in a prompt by their name (as A1111 does).

Files are A1111's `.safetensors` (`emb_params`, or `clip_l` + `clip_g` for SDXL) or diffusers' (one key, the
token). The store records each one's width (768 SD 1.x, 1024 SD 2.x, 768 + 1280 SDXL, 64 solvent-tiny); a
prompt that names an embedding of the model's width gets it loaded into that model's tokenizer and text
encoder(s) once, as `name` (and `name_1 …` for more vectors, which the prompt encoder expands).
"""

from __future__ import annotations

import re
from pathlib import Path

_A1111 = "emb_params"


def embedding_shapes(shapes: dict[str, tuple]) -> tuple[str, int] | None:
    """(architecture, width) when these tensor shapes are an embedding's, else None."""
    if set(shapes) == {"clip_l", "clip_g"}:
        return "sdxl", int(shapes["clip_l"][-1]) + int(shapes["clip_g"][-1])
    if _A1111 in shapes and len(shapes) <= 2:
        return "sd", int(shapes[_A1111][-1])
    if len(shapes) == 1:
        (key, shape), = shapes.items()
        if 1 <= len(shape) <= 2 and (len(shape) == 1 or shape[0] <= 75) and shape[-1] in (64, 768, 1024) \
                and "." not in key:
            return "sd", int(shape[-1])
    return None


def read_vectors(path: Path) -> dict[str, object]:
    """The vectors per text encoder: {"text_encoder": t} or, for SDXL, also {"text_encoder_2": t}."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    if "clip_l" in state:
        return {"text_encoder": state["clip_l"], "text_encoder_2": state["clip_g"]}
    tensor = state.get(_A1111, next(iter(state.values())))
    return {"text_encoder": tensor if tensor.ndim == 2 else tensor[None]}


def mentioned(text: str, names: list[str]) -> list[str]:
    """The embedding names `text` uses as words."""
    return [n for n in names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)]


def load_into(pipe, name: str, path: Path) -> None:
    """Add embedding `name` to the pipeline's tokenizer(s) and text encoder(s)."""
    vectors = read_vectors(path)
    pipe.load_textual_inversion(vectors["text_encoder"], token=name, text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)
    if "text_encoder_2" in vectors:
        pipe.load_textual_inversion(vectors["text_encoder_2"], token=name, text_encoder=pipe.text_encoder_2,
                                    tokenizer=pipe.tokenizer_2)
