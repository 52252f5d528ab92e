"""ControlNet units: tiny ControlNets written in the real layouts, recognised by the store, and images equal
to the bare diffusers ControlNet pipeline with the same seed; every bad unit a clear error."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from solvent.errors import IncompatibleAdapter, ModelNotFound, ValidationFailed
from solvent.generation import GenerationRequest
from solvent.generation.control import ControlUnit, preprocess
from solvent.tiny import weights_dir
from tests.tiny_models import build


def _tiny_controlnet(seed: int = 3):
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(seed)
    # solvent-tiny's VAE downsamples 4×, so the control-image encoder has one stride-2 step fewer than SD's.
    net = ControlNetModel.from_unet(UNet2DConditionModel.from_pretrained(str(weights_dir() / "unet")),
                                    conditioning_embedding_out_channels=(16, 32, 64))
    with torch.no_grad():  # zero-initialised outputs would make any control image a no-op: make them speak
        for p in net.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    return net


def silhouette(size=64) -> Image.Image:
    img = Image.new("RGB", (size, size), "black")
    ImageDraw.Draw(img).ellipse((8, 8, 30, 30), fill="white")
    return img


@pytest.fixture
def controlnet(engine, tmp_path):
    net = _tiny_controlnet()
    net.save_pretrained(tmp_path / "cn-folder", safe_serialization=True)
    record = engine.store.add(tmp_path / "cn-folder", model_id="tiny-scribble")
    return net, record


def test_the_store_recognises_a_controlnet_folder_and_file(engine, controlnet, tmp_path):
    net, record = controlnet
    assert (record.kind, record.architecture, record.cross_attention_dim) == ("controlnet", "sd", 64)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "cn.safetensors"))
    single = engine.store.add(tmp_path / "cn.safetensors", model_id="tiny-scribble-file")
    assert (single.kind, single.format, single.cross_attention_dim) == ("controlnet", "single_file", 64)
    assert [r.id for r in engine.store.list()] == ["solvent-tiny"]  # checkpoints only
    assert {r.id for r in engine.store.list("controlnet")} == {"solvent-tiny-silhouette", "tiny-scribble",
                                                               "tiny-scribble-file"}  # the built-in one too


def test_output_equals_the_bare_diffusers_controlnet_pipeline(engine, controlnet):
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionPipeline

    net, record = controlnet
    req = GenerationRequest(prompt="a red circle", seed=11, steps=4, sampler="euler", cfg_scale=2.0,
                            controls=[ControlUnit(record.id, silhouette(), "none", weight=0.8, guidance_end=0.75)])
    ours = np.asarray(engine.generate(req).images[0]).astype(int)

    base = StableDiffusionPipeline.from_pretrained(str(weights_dir()), local_files_only=True, safety_checker=None,
                                                   feature_extractor=None, requires_safety_checker=False,
                                                   tokenizer=engine.load("solvent-tiny").pipe.tokenizer)
    from diffusers import EulerDiscreteScheduler

    bare = StableDiffusionControlNetPipeline.from_pipe(base, controlnet=net)
    bare.scheduler = EulerDiscreteScheduler.from_config(engine.load("solvent-tiny").scheduler_config)
    out = bare("a red circle", negative_prompt="", image=silhouette(), num_inference_steps=4, guidance_scale=2.0,
               controlnet_conditioning_scale=0.8, control_guidance_end=0.75, width=64, height=64,
               generator=[torch.Generator("cpu").manual_seed(11)], output_type="pil").images[0]
    assert np.abs(ours - np.asarray(out).astype(int)).max() <= 1
    plain = np.asarray(engine.generate(GenerationRequest(prompt="a red circle", seed=11, steps=4,
                                                         sampler="euler", cfg_scale=2.0)).images[0]).astype(int)
    assert np.abs(ours - plain).max() > 10  # the control image changed the picture


def test_infotext_records_every_unit(engine, controlnet):
    _, record = controlnet
    out = engine.generate(GenerationRequest(prompt="x", seed=1, steps=2, controls=[
        ControlUnit(record.id, silhouette(), "invert", weight=0.5), ControlUnit(record.id, silhouette(), "canny")]))
    text = out.infotexts[0]
    assert 'ControlNet 0: "Module: invert, Model: tiny-scribble [' in text and "Weight: 0.5" in text
    assert 'ControlNet 1: "Module: canny' in text and "Control Mode: Balanced" in text
    assert [c["preprocessor"] for c in out.params["controls"]] == ["invert", "canny"]


@pytest.mark.parametrize("unit, field, words", [
    (ControlUnit("nope", None), "controlnets[0].model", "not installed"),
    (ControlUnit("solvent-tiny", None), "controlnets[0].model", "not a ControlNet"),
    (ControlUnit("tiny-scribble", None), "controlnets[0].image", "required"),
    (ControlUnit("tiny-scribble", silhouette(), "depth_midas"), "controlnets[0].preprocessor", "depth estimator"),
    (ControlUnit("tiny-scribble", silhouette(), "openpose"), "controlnets[0].preprocessor", "estimator weights"),
    (ControlUnit("tiny-scribble", silhouette(), "wobble"), "controlnets[0].preprocessor", "must be one of"),
    (ControlUnit("tiny-scribble", silhouette(), weight=3), "controlnets[0].weight", "between 0 and 2"),
    (ControlUnit("tiny-scribble", silhouette(), guidance_start=0.8, guidance_end=0.5),
     "controlnets[0].guidance_start", "less than"),
    (ControlUnit("tiny-scribble", silhouette(), control_mode="loud"), "controlnets[0].control_mode", "must be one of"),
])
def test_bad_units_name_the_field(engine, controlnet, unit, field, words):
    with pytest.raises((ValidationFailed, ModelNotFound)) as e:
        engine.generate(GenerationRequest(prompt="x", steps=2, controls=[unit]))
    assert e.value.field == field and words in e.value.message


def test_a_controlnet_of_another_family_is_refused_naming_both(engine, tmp_path):
    from diffusers import ControlNetModel

    sd1 = ControlNetModel.from_unet(build("sd1")["unet"])  # 32-wide conditioning: made for another model
    sd1.save_pretrained(tmp_path / "other", safe_serialization=True)
    engine.store.add(tmp_path / "other", model_id="other-cn")
    with pytest.raises(IncompatibleAdapter) as e:
        engine.generate(GenerationRequest(prompt="x", steps=2, controls=[ControlUnit("other-cn", silhouette())]))
    assert "'other-cn'" in e.value.message and "'solvent-tiny'" in e.value.message
    with pytest.raises(ValidationFailed) as e:
        engine.generate(GenerationRequest(model="other-cn", prompt="x", steps=2))
    assert e.value.field == "model" and "controlnet" in e.value.message


def test_preprocessors():
    img = silhouette()
    assert np.asarray(preprocess(img, "invert"))[0, 0].tolist() == [255, 255, 255]
    edges = np.asarray(preprocess(img, "canny", threshold_a=50, threshold_b=100))
    assert edges.max() == 255 and edges[0, 0].tolist() == [0, 0, 0]  # an outline, not the filled disc
    assert edges[19, 19].tolist() == [0, 0, 0] and (edges[:, :, 0] == 255).sum() < 200
    drawn = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(drawn).line((0, 32, 63, 32), fill="black", width=3)
    scribble = np.asarray(preprocess(drawn, "scribble"))
    assert scribble[32, 10].tolist() == [255, 255, 255] and scribble[5, 5].tolist() == [0, 0, 0]
    assert preprocess(img, "none", 32, 32).size == (32, 32)


def test_a_single_file_controlnet_draws_what_its_folder_draws(engine, controlnet, tmp_path):
    net, record = controlnet
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "one.safetensors"))
    engine.store.add(tmp_path / "one.safetensors", model_id="one-file")
    a, b = (engine.generate(GenerationRequest(prompt="x", seed=5, steps=3, controls=[ControlUnit(m, silhouette())]))
            for m in (record.id, "one-file"))
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_sd_and_sdxl_checkpoints_take_a_controlnet_like_the_bare_pipeline(engine, tmp_path, family):
    """A single-file checkpoint of each family with a ControlNet of its own shape: Solvent's image equals
    diffusers' ControlNet pipeline built from the same components, with the same seed."""
    import diffusers
    from diffusers import ControlNetModel, EulerDiscreteScheduler

    from solvent.generation.families import shipped_config
    from tests.tiny_models import write_checkpoint

    size = {"sd1": 64, "sdxl": 256}[family]  # SDXL's smallest side
    comps = write_checkpoint(family, tmp_path / "m.safetensors")
    engine.store.add(tmp_path / "m.safetensors", model_id="m", prediction_type="epsilon")
    torch.manual_seed(5)
    # the test VAEs downsample 2× (two blocks), so the control-image encoder takes one stride-2 step
    net = ControlNetModel.from_unet(comps["unet"], conditioning_embedding_out_channels=(16, 32))
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    net.save_pretrained(tmp_path / "cn", safe_serialization=True)
    record = engine.store.add(tmp_path / "cn", model_id="cn")
    assert record.architecture == ("sdxl" if family == "sdxl" else "sd")
    control = silhouette(size)
    ours = engine.generate(GenerationRequest(prompt="a red circle", model="m", steps=3, seed=7, width=size, height=size,
                                             sampler="euler", cfg_scale=5.0, controls=[ControlUnit("cn", control)]))
    sched = EulerDiscreteScheduler.from_config(shipped_config(family, "scheduler"), prediction_type="epsilon")
    name = "StableDiffusionXLControlNetPipeline" if family == "sdxl" else "StableDiffusionControlNetPipeline"
    extra = {} if family == "sdxl" else {"safety_checker": None, "feature_extractor": None,
                                         "requires_safety_checker": False}
    pipe = getattr(diffusers, name)(**comps, controlnet=net, scheduler=sched, **extra)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe("a red circle", image=control, num_inference_steps=3, guidance_scale=5.0, width=size, height=size,
               generator=[torch.Generator().manual_seed(7)]).images[0]
    assert np.abs(np.asarray(ours.images[0]).astype(int) - np.asarray(ref).astype(int)).max() <= 1


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_the_a1111_single_file_layout_loads_to_the_same_controlnet(engine, tmp_path, family):
    """sd-webui-controlnet's downloads (`control_model.input_hint_block…`, `zero_convs…`): recognised, and
    converted back to exactly the ControlNet they were written from."""
    from diffusers import ControlNetModel

    from solvent.engine.adapters import load_controlnet
    from tests.ldm_layout import controlnet_to_ldm

    comps = build(family)
    torch.manual_seed(2)
    net = ControlNetModel.from_unet(comps["unet"])  # SD's control-image encoder: 16, 32, 96, 256 (8× down)
    save_file(controlnet_to_ldm(net.state_dict(), dict(comps["unet"].config)), str(tmp_path / "cn_ldm.safetensors"))
    rec = engine.store.add(tmp_path / "cn_ldm.safetensors", model_id="cn-ldm")
    assert (rec.kind, rec.architecture, rec.cross_attention_dim, rec.format) == (
        "controlnet", "sdxl" if family == "sdxl" else "sd", comps["unet"].config.cross_attention_dim, "single_file")
    loaded = load_controlnet(engine.store.path_of(rec), rec.format, dict(comps["unet"].config))
    want, got = net.state_dict(), loaded.state_dict()
    assert set(want) == set(got)
    assert all(torch.equal(want[k], got[k]) for k in want)
    # some are published without the `control_model.` prefix (e.g. thibaud's SD 2.1 ControlNets)
    bare = {k.removeprefix("control_model."): v for k, v in controlnet_to_ldm(want, dict(comps["unet"].config)).items()}
    save_file(bare, str(tmp_path / "cn_bare.safetensors"))
    rec = engine.store.add(tmp_path / "cn_bare.safetensors", model_id="cn-bare")
    got = load_controlnet(engine.store.path_of(rec), rec.format, dict(comps["unet"].config)).state_dict()
    assert rec.kind == "controlnet" and all(torch.equal(want[k], got[k]) for k in want)


def test_a_control_lora_steers_like_diffusers_loads_it(engine, tmp_path):
    """Stability's control-LoRA layout: recognised as a ControlNet, built from the steered model's UNet with the
    file's factors fused in; the image equals diffusers' ControlNet pipeline with `load_lora_adapter`'s net."""
    from diffusers import ControlNetModel, EulerDiscreteScheduler, StableDiffusionControlNetPipeline

    from tests.adapter_files import control_lora_state, sd_shaped_pipeline

    pipe = sd_shaped_pipeline()
    pipe.save_pretrained(tmp_path / "sdshaped")
    engine.store.add(tmp_path / "sdshaped", model_id="sd-shaped")
    state = control_lora_state(pipe.unet)
    save_file(state, str(tmp_path / "control-lora-canny-rank4.safetensors"))
    rec = engine.store.add(tmp_path / "control-lora-canny-rank4.safetensors", model_id="cl")
    assert (rec.kind, rec.architecture, rec.cross_attention_dim, rec.details) == (
        "controlnet", "sd", 32, {"layout": "control_lora"})
    control = silhouette(64)
    ours = engine.generate(GenerationRequest(model="sd-shaped", prompt="a circle", seed=3, steps=3, sampler="euler",
                                             cfg_scale=4.0, width=64, height=64, controls=[ControlUnit("cl", control)]))
    net = ControlNetModel.from_unet(pipe.unet)
    net.load_lora_adapter(dict(state), prefix=None, controlnet_config=net.config)
    bare = StableDiffusionControlNetPipeline(**{k: v for k, v in pipe.components.items() if k != "image_encoder"},
                                             controlnet=net, requires_safety_checker=False)
    bare.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    bare.set_progress_bar_config(disable=True)
    ref = bare("a circle", negative_prompt="", image=control, num_inference_steps=3, guidance_scale=4.0, width=64,
               height=64, generator=[torch.Generator().manual_seed(3)]).images[0]
    assert np.abs(np.asarray(ours.images[0]).astype(int) - np.asarray(ref).astype(int)).max() <= 1
    plain = engine.generate(GenerationRequest(model="sd-shaped", prompt="a circle", seed=3, steps=3,
                                              sampler="euler", cfg_scale=4.0, width=64, height=64))
    assert np.abs(np.asarray(ours.images[0]).astype(int) - np.asarray(plain.images[0]).astype(int)).max() > 3
