"""The shipped tiny ControlNet: registered with the store, its weights as recorded, and on held-out scenes
the object goes where the silhouette is drawn, in the prompt's colours (floors a little under its scores)."""

import hashlib
import json

import pytest

from solvent.tiny import CONTROLNET_ID, controlnet_dir
from solvent.tiny.recipe.controlnet import evaluate

# Measured on 100 held-out scenes (python -m solvent.tiny.recipe.controlnet evaluate); the short run here
# uses the first 30 of them, so the floors sit a little under what the full run scored.
FLOORS = json.loads((controlnet_dir() / "recipe.json").read_text()).get("floors", {})


def test_it_is_built_in_and_its_weights_are_the_recorded_ones(engine):
    record = engine.store.get(CONTROLNET_ID)
    assert (record.kind, record.architecture, record.cross_attention_dim) == ("controlnet", "sd", 64)
    digest = hashlib.sha256((controlnet_dir() / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    assert digest == record.sha256 and CONTROLNET_ID in [r.id for r in engine.store.list("controlnet")]


@pytest.mark.parametrize("attr", ["position", "shape", "colour"])
def test_held_out_scenes_follow_the_silhouette(engine, attr, scores):
    assert scores[attr] >= FLOORS[attr], scores


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    from solvent.config import Settings
    from solvent.root import build_engine

    return evaluate(build_engine(Settings(home=tmp_path_factory.mktemp("cn-eval"))), CONTROLNET_ID, n=30)
