"""solvent-tiny-upscale, as shipped: a ×4 Real-ESRGAN-compact file spandrel loads, listed as a built-in upscaler,
better than Lanczos on held-out scenes (PSNR against the true 256² image) and read by the scene checker as well
as the original; its recipe still trains."""

import json

import pytest

from solvent.tiny import UPSCALER_ID, upscaler_dir
from solvent.tiny.recipe import upscaler as recipe

WEIGHTS = upscaler_dir() / "model.safetensors"
pytestmark = pytest.mark.skipif(not WEIGHTS.is_file(), reason="solvent-tiny-upscale's weights are not in this install")


def test_it_is_a_builtin_upscaler_spandrel_reads(engine):
    rec = engine.store.get(UPSCALER_ID)
    assert rec.kind == "upscaler" and rec.details["scale"] == 4 and rec.source == "builtin"
    assert WEIGHTS.stat().st_size < 4 * 1024 * 1024  # a few MB at most
    from safetensors.torch import load_file

    from solvent.engine.upscale import describe

    desc = describe(load_file(str(WEIGHTS)))
    assert desc.scale == 4
    shipped = json.loads((upscaler_dir() / "recipe.json").read_text())
    import hashlib

    assert shipped["sha256"] == hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() == rec.sha256


def test_it_beats_lanczos_on_held_out_scenes_and_the_checker_reads_it():
    got = recipe.evaluate(n=24)
    assert got["psnr_db"] > got["lanczos_psnr_db"] + 1.0, got
    assert got["wins"] >= 16, got  # of 24 scenes (82 of 100 in the shipped evaluation)
    assert got["checker_upscaled"] >= got["checker_original"] - 0.05, got


def test_the_recipe_trains(tmp_path):
    out = recipe.train(steps=3, batch=2, pool=4, out=tmp_path, log_every=1)
    assert (tmp_path / "model.safetensors").is_file() and out["final_mse"] > 0
    assert json.loads((tmp_path / "recipe.json").read_text())["steps"] == 3
