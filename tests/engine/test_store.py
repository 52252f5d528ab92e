import hashlib
import json
import subprocess
import sys
import time

import pytest

from solvent.engine import store as store_mod
from solvent.errors import Conflict, ModelNotFound, Offline, UnsafeCheckpoint, ValidationFailed
from solvent.tiny import MODEL_ID as BUILTIN_ID
from tests.tiny_models import build, write_checkpoint


def test_builtin_is_always_listed(engine):
    ids = [r.id for r in engine.store.list()]
    assert ids == [BUILTIN_ID]
    rec = engine.store.get(BUILTIN_ID)
    assert rec.family == "tiny" and rec.native_resolution == 64 and rec.source == "builtin"


def test_add_checkpoint_records_everything(tmp_path, engine):
    write_checkpoint("sdxl", tmp_path / "My XL Model.safetensors")
    rec = engine.store.add(tmp_path / "My XL Model.safetensors")
    assert rec.id == "my-xl-model"
    digest = hashlib.sha256((tmp_path / "My XL Model.safetensors").read_bytes()).hexdigest()
    assert rec.sha256 == digest and rec.short_hash == digest[:10]
    assert rec.family == "sdxl" and rec.format == "single_file" and rec.native_resolution == 1024
    assert (rec.default_steps, rec.default_cfg, rec.default_sampler) == (30, 6.0, "dpmpp_2m_karras")
    assert rec.size_bytes == (tmp_path / "My XL Model.safetensors").stat().st_size
    assert rec.files[0]["sha256"] == digest
    assert engine.store.get("my-xl-model").to_dict() == rec.to_dict()
    assert [r.id for r in engine.store.list()] == [BUILTIN_ID, "my-xl-model"]


def test_add_diffusers_folder(tmp_path, engine):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from solvent.generation.families import shipped_config

    comps = build("sd1")
    pipe = StableDiffusionPipeline(**comps, scheduler=EulerDiscreteScheduler.from_config(shipped_config("sd1", "scheduler")),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(tmp_path / "folder", safe_serialization=True)
    rec = engine.store.add(tmp_path / "folder", model_id="f")
    assert rec.family == "sd1" and rec.format == "diffusers" and len(rec.files) > 5
    from solvent.generation import GenerationRequest

    out = engine.generate(GenerationRequest(prompt="x", model="f", steps=2, width=64, height=64))
    assert out.images[0].size == (64, 64)


def test_pickle_only_folder_is_refused(tmp_path, engine):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from solvent.generation.families import shipped_config

    pipe = StableDiffusionPipeline(**build("sd1"), scheduler=EulerDiscreteScheduler.from_config(shipped_config("sd1", "scheduler")),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(tmp_path / "folder", safe_serialization=False)
    with pytest.raises(UnsafeCheckpoint):
        engine.store.add(tmp_path / "folder")


def test_duplicate_and_bad_ids(tmp_path, engine):
    write_checkpoint("sd1", tmp_path / "a.safetensors")
    engine.store.add(tmp_path / "a.safetensors", model_id="a")
    with pytest.raises(Conflict):
        engine.store.add(tmp_path / "a.safetensors", model_id="a")
    with pytest.raises(Conflict):
        engine.store.add(tmp_path / "a.safetensors", model_id=BUILTIN_ID)
    with pytest.raises(ValidationFailed) as e:
        engine.store.add(tmp_path / "a.safetensors", model_id="Bad Id!")
    assert e.value.field == "id"
    with pytest.raises(ValidationFailed) as e:
        engine.store.add(tmp_path / "a.safetensors", family="sdxl")
    assert e.value.field == "family" and "sd1" in e.value.message


def test_remove(tmp_path, engine):
    write_checkpoint("sd1", tmp_path / "a.safetensors")
    engine.store.add(tmp_path / "a.safetensors", model_id="a")
    engine.store.remove("a")
    with pytest.raises(ModelNotFound):
        engine.store.get("a")
    with pytest.raises(ValidationFailed):
        engine.store.remove(BUILTIN_ID)


def test_a_crash_mid_add_leaves_nothing_behind(tmp_path, engine, monkeypatch):
    write_checkpoint("sd1", tmp_path / "a.safetensors")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(store_mod, "hash_files", boom)
    with pytest.raises(KeyboardInterrupt):
        engine.store.add(tmp_path / "a.safetensors", model_id="a")
    assert list(engine.store.root.iterdir()) == []
    assert [r.id for r in engine.store.list()] == [BUILTIN_ID]


def test_pull_fails_at_once_offline(engine):
    t0 = time.monotonic()
    with pytest.raises(Offline) as e:
        engine.store.pull("stabilityai/sd-turbo")
    assert time.monotonic() - t0 < 2
    assert "offline" in e.value.message and e.value.field == "repo_id"


def test_pull_detects_an_unreachable_hub(engine, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(Offline):  # the network guard makes the hub unreachable
        engine.store.pull("stabilityai/sd-turbo")


def test_models_cli(tmp_path, home):
    write_checkpoint("sd1", tmp_path / "a.safetensors")
    env = {"SOLVENT_HOME": str(home), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "solvent.cli.main", *a], env=env, capture_output=True,  # noqa: E731
                                    text=True, timeout=300)
    out = run("models", "add", str(tmp_path / "a.safetensors"), "--id", "a", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "added a: sd1 single_file" in out.stdout
    listing = json.loads(run("models", "list", "--json").stdout)
    assert [m["id"] for m in listing] == [BUILTIN_ID, "solvent-tiny-silhouette", "solvent-tiny-upscale", "a"]  # every kind
    checkpoints = json.loads(run("models", "list", "--json", "--kind", "checkpoint").stdout)
    assert [m["id"] for m in checkpoints] == [BUILTIN_ID, "a"]
    assert json.loads(run("models", "show", "a").stdout)["family"] == "sd1"
    bad = run("models", "show", "zzz")
    assert bad.returncode == 2 and "'zzz' is not installed" in bad.stderr and "Traceback" not in bad.stderr
    assert run("models", "remove", "a").returncode == 0
    pickle = tmp_path / "m.ckpt"
    pickle.write_bytes(b"x")
    refused = run("models", "add", str(pickle))
    assert refused.returncode == 2 and "arbitrary code" in refused.stderr
    offline = run("models", "pull", "org/name")
    assert offline.returncode == 2 and "offline" in offline.stderr
