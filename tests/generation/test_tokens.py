"""Admission counts prompt tokens with `tokenizers` on the shipped CLIP files; the ids must be the ones the
engine's text encoder gets from transformers' own tokenizer on the same files."""

import pytest

from solvent.engine.checkpoint import tokenizer
from solvent.generation.prompts import chunk_prompt
from solvent.generation.tokens import clip_encode

PROMPTS = [
    "a red circle on a blue background",
    "Photo of  A CAT, (masterpiece:1.2) 3.5mm!!  \t\n new line",
    "café naïve façade, Ünïcödé, 日本語のテキスト, emoji 🎉🔥",
    "don't it's we're they'll I'd you've",
    "x" * 400,
    "<|startoftext|> literal specials <|endoftext|>",
    "",
]


@pytest.fixture(scope="module")
def reference():
    return tokenizer(openclip=False)


@pytest.mark.parametrize("text", PROMPTS)
def test_ids_match_transformers(reference, text):
    assert clip_encode(text) == reference(text, add_special_tokens=False, truncation=False).input_ids


def test_chunks_match_the_engines_count(reference):
    text = "a (red:1.3) circle BREAK " + "on a blue background, " * 30
    ours = chunk_prompt(clip_encode, text, 5)
    theirs = chunk_prompt(lambda t: reference(t, add_special_tokens=False, truncation=False).input_ids, text, 5)
    assert ours.ids == theirs.ids and ours.weights == theirs.weights and len(ours.ids) == 3
