"""Counting prompt tokens without torch: the shipped CLIP BPE files read by `tokenizers` (Rust, no model).

Built the way transformers converts its CLIP tokenizer (NFC, whitespace collapsed, lower case, CLIP's
split pattern, byte-level BPE with `</w>` word ends), so the ids are the ones the engine's text encoder
sees; a test compares them with transformers' own `CLIPTokenizer` on the same files.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from .families import TOKENIZER_DIR

Encode = Callable[[str], list[int]]
_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


@cache
def clip_tokenizer():
    """The shipped CLIP tokenizer as a `tokenizers.Tokenizer` (built once per process, ~0.2 s)."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE

    bpe = BPE.from_file(str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"),
                        continuing_subword_prefix="", end_of_word_suffix="</w>", fuse_unk=False,
                        unk_token="<|endoftext|>")
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.add_special_tokens(["<|startoftext|>", "<|endoftext|>"])  # written in a prompt, each is one token (as in CLIP)
    return tok


def clip_encode(text: str) -> list[int]:
    """Token ids of `text` with no start/end tokens (what `chunk_prompt` counts)."""
    return clip_tokenizer().encode(text, add_special_tokens=False).ids
