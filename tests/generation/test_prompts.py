"""Prompt syntax without torch: A1111 weights, BREAK, 75-token chunks and the length limit."""

import pytest

from solvent.errors import ValidationFailed
from solvent.generation.prompts import CHUNK, chunk_prompt, parse_weights
from solvent.generation.tokens import clip_encode


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a cat", [("a cat", 1.0)]),
        ("(cat)", [("cat", 1.1)]),
        ("((cat))", [("cat", pytest.approx(1.21))]),
        ("[cat]", [("cat", pytest.approx(1 / 1.1))]),
        ("a (cat:1.5) dog", [("a ", 1.0), ("cat", 1.5), (" dog", 1.0)]),
        (r"\(literal\)", [("(literal)", 1.0)]),
        ("a BREAK b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
        ("(unclosed", [("unclosed", 1.1)]),
        ("", [("", 1.0)]),
    ],
)
def test_parse_weights(text, expected):
    assert parse_weights(text) == expected


def test_chunks_and_limit():
    tok = clip_encode
    c = chunk_prompt(tok, "red " * 100, max_chunks=3)
    assert [len(x) for x in c.ids] == [CHUNK, 25]
    assert len(chunk_prompt(tok, "a BREAK b", 3).ids) == 2
    with pytest.raises(ValidationFailed) as e:
        chunk_prompt(tok, "red " * 300, max_chunks=3)
    assert e.value.field == "prompt" and "300 tokens" in e.value.message
