"""The shipped, trained `solvent-tiny`: it is trained, deterministic, follows its prompts, and a short
held-out evaluation stays at what the shipped weights score (floors a little below, so a broken
model fails CI without the test flaking)."""

from __future__ import annotations

import numpy as np
import pytest

from solvent.config import Settings
from solvent.generation import GenerationRequest
from solvent.root import build_engine
from solvent.tiny import manifest
from solvent.tiny.recipe.checker import inspect
from solvent.tiny.recipe.evaluate import evaluate

# Image 0 of "a small red circle at the top left on a blue background", seed 42, default settings:
# the RGB values of rows 14–16, columns 14–16 (inside the circle), recorded from the shipped weights.
REFERENCE = [[[209, 23, 27], [205, 25, 26], [203, 23, 26]], [[207, 23, 26], [204, 25, 26], [202, 24, 25]],
             [[208, 25, 26], [206, 27, 26], [205, 26, 26]]]
# Floors a little under what the shipped weights score on this subset (100% on all four): they
# catch a broken model without flaking. The full 100 captions score 100 / 100 / 90 / 100%.
SHORT_EVAL = {"colour": 0.90, "background": 0.90, "shape": 0.75, "position": 0.90}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return build_engine(Settings(home=tmp_path_factory.mktemp("tiny-home")))


def test_shipped_weights_are_trained():
    man = manifest()
    assert man["trained"] is True
    assert man["recipe"]["unet_steps"] >= 1000 and man["unet_final_loss"] < 0.15 and man["vae_final_mse"] < 0.03
    assert man["vae_candidates"][man["vae_chosen"]]["shape"] >= 0.75  # the VAE's own round trip


def test_fixed_seed_render_matches_the_reference(engine):
    # Bit-identical within one process (same seed, same image); within 3/255 of the recorded slice across
    # torch builds and CPUs (diffusers' tests allow 1e-2 of the range for the same reason).
    req = GenerationRequest(prompt="a small red circle at the top left on a blue background", seed=42)
    img = np.asarray(engine.generate(req).images[0])
    assert img.shape == (64, 64, 3)
    assert np.array_equal(img, np.asarray(engine.generate(req).images[0]))
    assert np.abs(img[14:17, 14:17].astype(int) - np.array(REFERENCE)).max() <= 3


def test_follows_the_prompt_and_ignores_unknown_words(engine):
    for prompt in ("a red circle on a blue background",
                   "a red circle on a blue background, masterpiece, trending on artstation, 8k"):
        seen = inspect(engine.generate(GenerationRequest(prompt=prompt, seed=3)).images[0])
        assert (seen.colour, seen.background, seen.shape) == ("red", "blue", "circle"), (prompt, seen)


def test_empty_prompt_still_makes_an_image(engine):
    img = engine.generate(GenerationRequest(prompt="", seed=1)).images[0]
    arr = np.asarray(img)
    assert img.size == (64, 64) and np.isfinite(arr).all() and arr.std() > 0


def test_short_heldout_evaluation(engine):
    report = evaluate(engine, n=24)
    for metric, floor in SHORT_EVAL.items():
        assert report.scores[metric] >= floor, report.table()


def test_plain_prompts_report_counts_what_the_checker_reads(engine):
    from solvent.tiny.recipe.evaluate import PLAIN_PROMPTS, plain

    rows = plain(engine, seeds=1)
    assert [r["prompt"] for r in rows] == [p for p, *_ in PLAIN_PROMPTS]
    assert all(0 <= r[k] <= 1 for r in rows for k in ("background", "colour", "shape"))
    assert rows[0]["background"] == rows[0]["colour"] == 1  # the acceptance prompt, seed 0
