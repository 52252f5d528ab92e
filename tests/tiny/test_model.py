"""The shipped, trained `solvent-tiny`: it is trained, deterministic, follows its prompts, and a short
held-out evaluation stays at what the shipped weights score (floors a little below, so a broken
model fails CI without the test flaking)."""

from __future__ import annotations

import numpy as np
import pytest

from solvent.config import Settings
from solvent.engine import Engine, GenerationRequest
from solvent.tiny import manifest
from solvent.tiny.checker import inspect
from solvent.tiny.evaluate import evaluate

# Image 0 of "a small red circle at the top left on a blue background", seed 42, default settings:
# the RGB values of rows 8–10, columns 8–10 (inside the circle), recorded from the shipped weights.
REFERENCE = [[[46, 41, 191], [53, 38, 171], [71, 36, 145]], [[61, 35, 163], [79, 32, 132], [106, 27, 98]],
             [[86, 32, 130], [111, 27, 92], [146, 22, 58]]]
# Floors a little under what the shipped weights score on this subset (colour 87.5%, background 100%,
# shape 54%, position 100%): they catch a broken model. Shape and colour are still under the issue's
# targets (75% and 90%); see the README's solvent-tiny section.
SHORT_EVAL = {"colour": 0.75, "background": 0.90, "shape": 0.40, "position": 0.90}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(Settings(home=tmp_path_factory.mktemp("tiny-home")))


def test_shipped_weights_are_trained():
    man = manifest()
    assert man["trained"] is True
    assert man["recipe"]["unet_steps"] >= 1000 and man["unet_final_loss"] < 0.15 and man["vae_final_mse"] < 0.03


def test_fixed_seed_render_is_bit_identical_to_the_reference(engine):
    req = GenerationRequest(prompt="a small red circle at the top left on a blue background", seed=42)
    img = np.asarray(engine.generate(req).images[0])
    assert img.shape == (64, 64, 3)
    assert img[8:11, 8:11].tolist() == REFERENCE


def test_follows_the_prompt_and_ignores_unknown_words(engine):
    for prompt in ("a red circle on a blue background",
                   "a red circle on a blue background, masterpiece, trending on artstation, 8k"):
        seen = inspect(engine.generate(GenerationRequest(prompt=prompt, seed=3)).images[0])
        assert (seen.colour, seen.shape, seen.background) == ("red", "circle", "blue"), (prompt, seen)


def test_empty_prompt_still_makes_an_image(engine):
    img = engine.generate(GenerationRequest(prompt="", seed=1)).images[0]
    arr = np.asarray(img)
    assert img.size == (64, 64) and np.isfinite(arr).all() and arr.std() > 0


def test_short_heldout_evaluation(engine):
    report = evaluate(engine, n=24)
    for metric, floor in SHORT_EVAL.items():
        assert report.scores[metric] >= floor, report.table()
