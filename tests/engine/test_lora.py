import numpy as np
import pytest

from solvent.errors import IncompatibleLora
from solvent.generation import GenerationRequest, LoraSpec
from tests.lora_files import write_diffusers, write_kohya
from tests.tiny_models import write_checkpoint


@pytest.fixture
def sd1(tmp_path, engine, home):
    comps = write_checkpoint("sd1", tmp_path / "m.safetensors")
    engine.store.add(tmp_path / "m.safetensors", model_id="m")
    (home / "loras").mkdir(parents=True)
    write_kohya(comps["unet"], comps["text_encoder"], home / "loras" / "kohya.safetensors")
    write_diffusers(comps["unet"], home / "loras" / "peft.safetensors")
    write_kohya(comps["unet"], comps["text_encoder"], home / "loras" / "xl.safetensors", sdxl=True)
    return engine


def run(engine, loras):
    out = engine.generate(GenerationRequest(prompt="x", model="m", seed=1, steps=3, width=64, height=64, loras=loras))
    return out, np.asarray(out.images[0]).astype(int)


def test_kohya_and_diffusers_layouts_apply_with_weights(sd1):
    _, base = run(sd1, [])
    out, k1 = run(sd1, [LoraSpec("kohya", 1.0)])
    _, k0 = run(sd1, [LoraSpec("kohya", 0.0)])
    _, p1 = run(sd1, [LoraSpec("peft", 1.0)])
    _, both = run(sd1, [LoraSpec("kohya", 0.5), LoraSpec("peft", 0.5)])
    _, again = run(sd1, [])
    assert np.abs(k1 - base).max() > 10 and np.abs(p1 - base).max() > 10
    assert np.abs(k0 - base).max() <= 1  # weight 0 is the base model
    assert not np.array_equal(both, k1)
    assert np.array_equal(again, base)  # adapters are switched off when not asked for
    assert 'Lora weights: "kohya: 1"' in out.infotexts[0]


def test_wrong_family_lora_is_refused(sd1):
    with pytest.raises(IncompatibleLora) as e:
        run(sd1, [LoraSpec("xl", 1.0)])
    assert e.value.field == "loras" and "sdxl" in e.value.message
    _, img = run(sd1, [])  # and the model still works
    assert img.shape == (64, 64, 3)


def test_worker_declares_the_loras_each_model_can_take(sd1, tmp_path):
    from solvent.workers.loop import declaration

    loras = sd1.settings.loras_dir
    (loras / "broken.safetensors").write_bytes(b"not a safetensors file")
    (loras / "notes.txt").write_text("not a LoRA")
    comps = write_checkpoint("sdxl", tmp_path / "xl.safetensors")
    sd1.store.add(tmp_path / "xl.safetensors", model_id="xl")
    write_kohya(comps["unet"], comps["text_encoder_2"], loras / "xl-fit.safetensors", sdxl=True)
    declared = {m["id"]: m["loras"] for m in declaration(sd1)["models"] if m.get("kind", "checkpoint") == "checkpoint"}
    # Each model lists the LoRAs of its architecture and cross-attention width; unreadable files are left out.
    assert declared["m"] == ["kohya", "peft"]
    assert declared["xl"] == ["xl-fit"]  # "xl" is SDXL-shaped but for a narrower UNet
    assert declared["solvent-tiny"] == []  # an SD 1.x LoRA for another width does not fit the tiny model
    out, _ = run(sd1, [LoraSpec(declared["m"][0], 1.0)])  # and what is declared really runs
    assert out.images[0].size == (64, 64)
