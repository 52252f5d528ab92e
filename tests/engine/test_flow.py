"""SD3 / SD3.5 and Flux.1 in every real layout, loaded offline, equal to bare diffusers; their samplers, shift,
guidance, few-step defaults and bad inputs."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from solvent.engine.checkpoint import read_shapes
from solvent.engine.flow import inspect_flow
from solvent.errors import IncompatibleAdapter, ModelTooLarge, UnsupportedModel, ValidationFailed
from solvent.generation import GenerationRequest
from tests.flow_models import (
    build_flux,
    build_sd3,
    clip_file,
    pipeline,
    save_folder,
    t5,
    t5_file,
    write_flux_files,
    write_sd3_single,
)

SIZE = 256  # the families' smallest side; the tiny VAEs downsample 8×


def _bare(family: str, comps: dict, steps: int = 3, seed: int = 7, cfg: float = 4.0, **kw) -> np.ndarray:
    pipe = pipeline(family, comps)
    extra = {"max_sequence_length": 512 if comps["transformer"].config.guidance_embeds else 256} if (
        family == "flux") else {}
    img = pipe("a red cube on a table", num_inference_steps=steps, guidance_scale=cfg, width=SIZE, height=SIZE,
               generator=[torch.Generator().manual_seed(seed)], **extra, **kw).images[0]
    return np.asarray(img).astype(int)


def _ours(engine, model: str, steps: int = 3, seed: int = 7, cfg: float | None = 4.0, **kw):
    return engine.generate(GenerationRequest(prompt="a red cube on a table", model=model, steps=steps, seed=seed,
                                             width=SIZE, height=SIZE, cfg_scale=cfg, **kw))


def _same(result, ref: np.ndarray) -> int:
    return int(np.abs(np.asarray(result.images[0]).astype(int) - ref).max())


@pytest.mark.parametrize("v35", [False, True], ids=["sd3", "sd3.5"])
def test_sd3_single_file_equals_diffusers(tmp_path, engine, v35):
    comps = build_sd3(v35)
    ref = _bare("sd3", comps)
    write_sd3_single(build_sd3(v35), tmp_path / "sd3.safetensors")
    rec = engine.store.add(tmp_path / "sd3.safetensors", model_id="sd3m")
    assert (rec.family, rec.format, rec.default_sampler, rec.details["t5"]) == ("sd3", "single_file", "flow_euler", True)
    assert engine.store.latent_channels(rec) == 16
    out = _ours(engine, "sd3m")
    assert _same(out, ref) <= 1
    assert out.usage.steps_run == 3 and out.params["sampler"] == "flow_euler"


def test_sd3_without_t5_runs_and_differs(tmp_path, engine):
    """SD3 without its T5 encoder (the documented quality trade-off): zeros stand in for T5's states."""
    ref = _bare("sd3", build_sd3(with_t5=False))
    write_sd3_single(build_sd3(), tmp_path / "no-t5.safetensors", with_t5=False)
    rec = engine.store.add(tmp_path / "no-t5.safetensors", model_id="sd3-no-t5")
    assert rec.details["t5"] is False
    out = _ours(engine, "sd3-no-t5")
    assert _same(out, ref) <= 1
    assert _same(out, _bare("sd3", build_sd3())) > 4  # T5 changes the image


def test_sd3_single_file_takes_a_separate_t5(tmp_path, engine):
    comps = build_sd3()
    write_sd3_single(comps, tmp_path / "sd3.safetensors", with_t5=False)
    save_file(t5_file(comps["text_encoder_3"]), str(tmp_path / "t5xxl.safetensors"))
    engine.store.add(tmp_path / "sd3.safetensors", model_id="sd3t", components={"t5": tmp_path / "t5xxl.safetensors"})
    assert _same(_ours(engine, "sd3t"), _bare("sd3", build_sd3())) <= 1


@pytest.mark.parametrize("layout", ["bfl", "comfy"])
@pytest.mark.parametrize("schnell", [False, True], ids=["dev", "schnell"])
def test_flux_transformer_file_with_separate_encoders_equals_diffusers(tmp_path, engine, layout, schnell):
    paths = write_flux_files(build_flux(schnell), tmp_path / "files", comfy=layout == "comfy")
    main = paths.pop("path")
    rec = engine.store.add(main, model_id="flux", components=paths)
    assert rec.family == "flux" and sorted(rec.details["components"]) == ["clip_l", "t5", "vae"]
    assert rec.details["variant"] == ("schnell" if schnell else "dev")
    assert (engine.store.root / "flux" / "components" / "t5.safetensors").is_file()  # copied beside it
    cfg = 0.0 if schnell else 3.5
    ref = _bare("flux", build_flux(schnell), cfg=cfg)
    assert _same(_ours(engine, "flux", cfg=cfg), ref) <= 1


def test_flux_fp8_file_loads_upcast(tmp_path, engine):
    """Flux fine-tunes are often shared in fp8: the weights are upcast to the working dtype on load."""
    paths = write_flux_files(build_flux(), tmp_path / "files", dtype=torch.float8_e4m3fn)
    main = paths.pop("path")
    engine.store.add(main, model_id="flux8", components=paths)
    out = _ours(engine, "flux8", cfg=3.5)
    diff = _same(out, _bare("flux", build_flux(), cfg=3.5))
    assert 0 < diff < 80, diff  # fp8 rounding, not noise


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_diffusers_folder_equals_diffusers(tmp_path, engine, family):
    comps = build_sd3() if family == "sd3" else build_flux()
    save_folder(family, comps, tmp_path / "folder")
    rec = engine.store.add(tmp_path / "folder", model_id="f")
    assert rec.family == family and rec.format == "diffusers"
    cfg = 3.5 if family == "flux" else 4.0
    ref = _bare(family, build_sd3() if family == "sd3" else build_flux(), cfg=cfg)
    assert _same(_ours(engine, "f", cfg=cfg), ref) <= 1


def test_flux_schnell_and_turbo_names_set_few_step_defaults(tmp_path, engine):
    paths = write_flux_files(build_flux(schnell=True), tmp_path / "files")
    rec = engine.store.add(paths.pop("path"), model_id="flux1-schnell", components=paths)
    assert (rec.preset, rec.default_steps, rec.default_cfg) == ("schnell", 4, 0.0)
    out = engine.generate(GenerationRequest(prompt="x", model="flux1-schnell", width=SIZE, height=SIZE, seed=1))
    assert out.usage.steps_run == 4
    write_sd3_single(build_sd3(True), tmp_path / "sd3.5_large_turbo.safetensors")
    rec = engine.store.add(tmp_path / "sd3.5_large_turbo.safetensors")
    assert (rec.preset, rec.default_steps, rec.default_cfg) == ("sd3-turbo", 4, 0.0)


def test_flow_samplers_shift_and_refusals(tmp_path, engine):
    write_sd3_single(build_sd3(), tmp_path / "sd3.safetensors")
    engine.store.add(tmp_path / "sd3.safetensors", model_id="sd3m")
    base = _ours(engine, "sd3m", steps=2)
    heun = _ours(engine, "sd3m", steps=2, sampler="flow_heun")
    euler = _ours(engine, "sd3m", steps=2, sampler="Euler")  # A1111's name maps to the flow equivalent
    assert euler.params["sampler"] == "flow_euler" and _same(euler, np.asarray(base.images[0]).astype(int)) <= 1
    assert _same(heun, np.asarray(base.images[0]).astype(int)) > 4
    default_sigmas = engine.load("sd3m").pipe.scheduler.sigmas.clone()  # the last call's: flow_euler, shift 3
    _ours(engine, "sd3m", steps=2, shift=1.0)
    sched = engine.load("sd3m").pipe.scheduler
    assert sched.config.shift == 1.0 and not torch.allclose(sched.sigmas[:2], default_sigmas[:2])
    assert engine.load("sd3m").scheduler_config["shift"] == 3.0  # the model's own is kept for the next request
    ref = _bare("sd3", build_sd3(), steps=2)
    assert _same(base, ref) <= 1
    with pytest.raises(ValidationFailed) as e:
        _ours(engine, "sd3m", sampler="dpmpp_2m_karras")
    assert e.value.field == "sampler" and "flow_euler" in e.value.message
    with pytest.raises(ValidationFailed) as e:
        _ours(engine, "sd3m", shift=50)
    assert e.value.field == "shift"
    with pytest.raises(ValidationFailed) as e:
        engine.generate(GenerationRequest(prompt="x", sampler="flow_euler"))  # solvent-tiny is a UNet model
    assert e.value.field == "sampler" and "UNet" in e.value.message
    with pytest.raises(ValidationFailed) as e:
        engine.generate(GenerationRequest(prompt="x", shift=2.0))
    assert e.value.field == "shift"


def test_flux_heun_is_refused_with_the_samplers_that_run(tmp_path, engine):
    paths = write_flux_files(build_flux(), tmp_path / "files")
    engine.store.add(paths.pop("path"), model_id="flux", components=paths)
    with pytest.raises(ValidationFailed) as e:
        _ours(engine, "flux", sampler="flow_heun")
    assert "flow_euler" in e.value.message and "flow_heun" not in e.value.message.split("run them:")[1]


@pytest.mark.parametrize("model", ["sd3m", "flux"])
def test_img2img_and_inpaint_run_on_flow_models(flow_engine, model):
    from PIL import Image

    engine = flow_engine
    init = Image.new("RGB", (SIZE, SIZE), (200, 30, 30))
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (0, 0, SIZE // 2, SIZE))
    i2i = _ours(engine, model, steps=4, init_image=init, strength=0.5)
    assert i2i.usage.steps_run == 2 and i2i.images[0].size == (SIZE, SIZE)
    inp = _ours(engine, model, steps=4, init_image=init, strength=1.0, mask=mask)
    kept = np.asarray(inp.images[0])[:, SIZE // 2 + 8:]
    assert np.abs(kept.astype(int) - np.asarray(init)[:, SIZE // 2 + 8:]).max() <= 1  # black keeps the image


def test_a_flux_transformer_without_its_encoders_is_refused_by_name(tmp_path, engine):
    paths = write_flux_files(build_flux(), tmp_path / "files")
    with pytest.raises(UnsupportedModel) as e:
        engine.store.add(paths["path"], model_id="bare-flux")
    assert e.value.field == "clip_l" and "--t5" in e.value.message and "--clip-l" in e.value.message
    with pytest.raises(UnsupportedModel) as e:  # a CLIP file where T5 belongs
        engine.store.add(paths["path"], components={"clip_l": paths["clip_l"], "t5": paths["clip_l"],
                                                    "vae": paths["vae"]})
    assert e.value.field == "t5" and "T5-XXL" in e.value.message
    assert not (engine.store.root / "flux1").exists()


def test_a_t5_of_the_wrong_size_is_named(tmp_path, engine):
    paths = write_flux_files(build_flux(), tmp_path / "files")
    save_file(t5_file(t5(width=32)), str(tmp_path / "t5-small.safetensors"))
    with pytest.raises(IncompatibleAdapter) as e:
        engine.store.add(paths["path"], components={**{k: v for k, v in paths.items() if k != "path"},
                                                    "t5": tmp_path / "t5-small.safetensors"})
    assert e.value.field == "t5" and "32-wide" in e.value.message and "64-wide" in e.value.message


def test_sd3_clip_of_the_wrong_width_and_unknown_components(tmp_path, engine):
    comps = build_sd3()
    write_sd3_single(comps, tmp_path / "sd3.safetensors")
    with pytest.raises(ValidationFailed) as e:
        engine.store.add(tmp_path / "sd3.safetensors", components={"t5": tmp_path / "sd3.safetensors"})
    assert e.value.field == "t5" and "already inside" in e.value.message
    paths = write_flux_files(build_flux(), tmp_path / "files")
    with pytest.raises(ValidationFailed) as e:
        engine.store.add(paths["path"], components={"clip_g": paths["clip_l"]})
    assert e.value.field == "clip_g"
    from tests.tiny_models import write_checkpoint

    write_checkpoint("sd1", tmp_path / "sd1.safetensors")
    with pytest.raises(ValidationFailed) as e:
        engine.store.add(tmp_path / "sd1.safetensors", components={"t5": paths["t5"]})
    assert e.value.field == "t5"
    save_file(clip_file(build_flux()["text_encoder"]), str(tmp_path / "clip_l.safetensors"))
    assert inspect_flow(read_shapes(tmp_path / "clip_l.safetensors")) is None


def test_flux_clip_skip_controls_and_ip_adapters_are_refused(tmp_path, engine):
    from solvent.generation.control import ControlUnit

    paths = write_flux_files(build_flux(), tmp_path / "files")
    engine.store.add(paths.pop("path"), model_id="flux", components=paths)
    with pytest.raises(ValidationFailed) as e:
        _ours(engine, "flux", clip_skip=2)
    assert e.value.field == "clip_skip"
    with pytest.raises(IncompatibleAdapter) as e:
        _ours(engine, "flux", controls=[ControlUnit("cn", None)])
    assert e.value.field == "controlnets"
    assert engine.fits(engine.store.get("flux"))["controlnets"] == []


def test_sd3_weights_its_clip_states_and_leaves_t5_alone():
    from solvent.engine.prompts import sd3_reweight

    pipe = pipeline("sd3", build_sd3(True))
    cpu = torch.device("cpu")
    with torch.inference_mode():
        pe = pipe.encode_prompt(prompt=["a red cube on a table"], prompt_2=None, prompt_3=None, negative_prompt=[""],
                                device=cpu)[0]
        same = pe.clone()
        sd3_reweight(pipe, same, 0, "a red cube on a table", 1, 3, cpu)  # no weights: untouched
        assert torch.equal(same, pe)
        up, down = pe.clone(), pe.clone()
        sd3_reweight(pipe, up, 0, "a (red:1.6) cube on a table", 1, 3, cpu)
        sd3_reweight(pipe, down, 0, "a (red:0.4) cube on a table", 1, 3, cpu)
    assert torch.equal(up[:, 77:], pe[:, 77:]) and torch.equal(down[:, 77:], pe[:, 77:])  # T5's states
    assert (up[:, :77] - pe[:, :77]).abs().max() > 0.1 and (up[:, :77] - down[:, :77]).abs().max() > 0.1
    assert torch.allclose(up[:, :77].mean(), pe[:, :77].mean(), atol=1e-5)  # A1111's mean restored


def test_weighted_prompts_run_on_both_and_flux_reads_them_as_plain_text(flow_engine):
    def run(model, prompt):
        out = flow_engine.generate(GenerationRequest(prompt=prompt, model=model, negative_prompt="(blurry:1.2)",
                                                     steps=2, seed=7, width=SIZE, height=SIZE, cfg_scale=4.0))
        return np.asarray(out.images[0]).astype(int)

    assert run("sd3m", "a (red:1.6) cube on a [table]").shape == (SIZE, SIZE, 3)
    flux = run("flux", "a red cube on a table")
    assert np.abs(run("flux", "a (red:1.6) cube on a [table]") - flux).max() <= 1  # T5 + pooled CLIP: no weights


def test_a_model_larger_than_the_cache_budget_is_refused_before_loading(tmp_path, engine):
    write_sd3_single(build_sd3(), tmp_path / "sd3.safetensors")
    engine.store.add(tmp_path / "sd3.safetensors", model_id="sd3m")
    need = engine.store.parameter_count(engine.store.get("sd3m")) * 4
    engine.settings.model_cache_bytes = need - 1
    with pytest.raises(ModelTooLarge) as e:
        _ours(engine, "sd3m")
    assert "SOLVENT_MODEL_CACHE_BYTES" in e.value.message and e.value.field == "model"
    assert engine.loaded_models() == []
    engine.settings.model_cache_bytes = need
    assert _ours(engine, "sd3m", steps=1).usage.steps_run == 1


def test_batched_flow_requests_equal_separate_ones(tmp_path, engine):
    write_sd3_single(build_sd3(), tmp_path / "sd3.safetensors")
    engine.store.add(tmp_path / "sd3.safetensors", model_id="sd3m")
    reqs = [GenerationRequest(prompt=p, model="sd3m", steps=2, seed=s, width=SIZE, height=SIZE, cfg_scale=4.0)
            for p, s in (("a red cube", 1), ("a blue ball", 2))]
    together = engine.generate_batch(reqs)
    for req, res in zip(reqs, together, strict=True):
        alone = engine.generate(req)
        assert _same(res, np.asarray(alone.images[0]).astype(int)) <= 1


@pytest.fixture(scope="module")
def flow_engine(tmp_path_factory):
    from solvent.config import Settings
    from solvent.root import build_engine

    eng = build_engine(Settings(home=tmp_path_factory.mktemp("home")))
    files = tmp_path_factory.mktemp("files")
    write_sd3_single(build_sd3(True), files / "sd3.safetensors")
    eng.store.add(files / "sd3.safetensors", model_id="sd3m")
    paths = write_flux_files(build_flux(), files / "flux")
    eng.store.add(paths.pop("path"), model_id="flux", components=paths)
    return eng


FLOW_RUNS = [(m, s.name) for s in __import__("solvent.generation", fromlist=["SAMPLERS"]).SAMPLERS if s.flow
             for m in ("sd3m", "flux") if not (s.only and m == "flux")]  # Flux's refusal of Heun: tested above


@pytest.mark.parametrize("model,sampler", FLOW_RUNS)
def test_every_flow_sampler_runs_deterministically(flow_engine, sampler, model):
    req = GenerationRequest(prompt="a red cube", model=model, sampler=sampler, steps=3, seed=5, width=SIZE, height=SIZE)
    a, b = flow_engine.generate(req), flow_engine.generate(req)
    assert a.params["sampler"] == sampler and a.usage.steps_run >= 3
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))


def _bare_with_lora(family: str, comps: dict, lora, weight: float, cfg: float) -> np.ndarray:
    pipe = pipeline(family, comps)
    pipe.load_lora_weights(str(lora), adapter_name="x")
    pipe.set_adapters(["x"], adapter_weights=[weight])
    extra = {"max_sequence_length": 512} if family == "flux" else {}
    img = pipe("a red cube on a table", num_inference_steps=3, guidance_scale=cfg, width=SIZE, height=SIZE,
               generator=[torch.Generator().manual_seed(7)], **extra).images[0]
    return np.asarray(img).astype(int)


@pytest.mark.parametrize("family,layout", [("sd3", "diffusers"), ("flux", "diffusers"), ("flux", "kohya")])
def test_flow_loras_in_each_format_equal_diffusers(tmp_path, engine, family, layout):
    from solvent.engine.lora import lora_family
    from tests.flow_models import write_flux_kohya_lora, write_transformer_lora

    comps = build_sd3() if family == "sd3" else build_flux()
    if family == "sd3":
        write_sd3_single(comps, tmp_path / "m.safetensors")
        engine.store.add(tmp_path / "m.safetensors", model_id="m")
    else:
        paths = write_flux_files(comps, tmp_path / "files")
        engine.store.add(paths.pop("path"), model_id="m", components=paths)
    engine.settings.loras_dir.mkdir(parents=True, exist_ok=True)
    lora = engine.settings.loras_dir / "style.safetensors"
    (write_flux_kohya_lora if layout == "kohya" else write_transformer_lora)(comps["transformer"], lora)
    assert lora_family(lora)[0] == ("flux" if family == "flux" else "transformer")  # SD3: joint blocks alone
    cfg = 3.5 if family == "flux" else 4.0
    plain = _ours(engine, "m", cfg=cfg)
    styled = _ours(engine, "m", cfg=cfg, loras=[__import__("solvent.generation", fromlist=["LoraSpec"]).LoraSpec(
        "style", 0.8)])
    fresh = build_sd3() if family == "sd3" else build_flux()
    assert _same(styled, _bare_with_lora(family, fresh, lora, 0.8, cfg)) <= 1
    assert _same(styled, np.asarray(plain.images[0]).astype(int)) > 4
    again = _ours(engine, "m", cfg=cfg)  # the LoRA is off again for a request without it
    assert _same(again, np.asarray(plain.images[0]).astype(int)) <= 1


def test_a_unet_lora_is_refused_for_a_flow_model(tmp_path, engine):
    from solvent.errors import IncompatibleLora
    from solvent.generation import LoraSpec
    from tests.lora_files import write_diffusers
    from tests.tiny_models import build

    write_sd3_single(build_sd3(), tmp_path / "m.safetensors")
    engine.store.add(tmp_path / "m.safetensors", model_id="m")
    engine.settings.loras_dir.mkdir(parents=True, exist_ok=True)
    write_diffusers(build("sd1")["unet"], engine.settings.loras_dir / "sd15.safetensors")
    with pytest.raises(IncompatibleLora) as e:
        _ours(engine, "m", loras=[LoraSpec("sd15", 1.0)])
    assert e.value.field == "loras" and "sd3" in e.value.message


def test_few_step_unet_models_and_loras_get_their_defaults(tmp_path, engine):
    """SDXL-Turbo by its name: 1 step, no CFG, trailing Euler a; an LCM-LoRA brings LCM's defaults to a
    standard model; a request's own settings always win."""
    from solvent.generation import LoraSpec
    from tests.lora_files import write_diffusers
    from tests.tiny_models import write_checkpoint

    write_checkpoint("sdxl", tmp_path / "sdxl-turbo.safetensors")
    rec = engine.store.add(tmp_path / "sdxl-turbo.safetensors", prediction_type="epsilon")
    assert (rec.id, rec.preset, rec.default_steps, rec.default_cfg, rec.default_sampler) == (
        "sdxl-turbo", "turbo", 1, 0.0, "euler_a_trailing")
    out = engine.generate(GenerationRequest(prompt="a cat", model="sdxl-turbo", width=SIZE, height=SIZE, seed=2))
    assert out.usage.steps_run == 1 and out.params["cfg_scale"] == 0.0
    assert engine.generate(GenerationRequest(prompt="a cat", model="sdxl-turbo", width=SIZE, height=SIZE,
                                             steps=3)).usage.steps_run == 3
    comps = write_checkpoint("sd1", tmp_path / "plain.safetensors")
    engine.store.add(tmp_path / "plain.safetensors", model_id="plain", prediction_type="epsilon")
    engine.settings.loras_dir.mkdir(parents=True, exist_ok=True)
    write_diffusers(comps["unet"], engine.settings.loras_dir / "lcm-lora-sdv1-5.safetensors")
    req = GenerationRequest(prompt="a cat", model="plain", width=64, height=64, loras=[LoraSpec("lcm-lora-sdv1-5", 1.0)])
    res = engine.resolve(req)
    assert (res.steps, res.cfg_scale, res.sampler.name) == (4, 1.5, "lcm")
    assert engine.generate(req).usage.steps_run == 4
    from solvent.generation.families import preset_for

    assert [preset_for(n, "sd1") for n in ("hyperrealism_v3", "calcium", "dreamshaper_8")] == [None] * 3
    assert preset_for("Hyper-SD15-8steps-lora", "sd1").name == "lightning"
    forced = engine.store.add(tmp_path / "plain.safetensors", model_id="plain-turbo", preset="turbo",
                              prediction_type="epsilon")
    assert forced.default_steps == 1
    with pytest.raises(ValidationFailed) as e:
        engine.store.add(tmp_path / "plain.safetensors", model_id="x", preset="warp")
    assert e.value.field == "preset"


def test_a_flux_lora_in_bfl_comfy_names_equals_its_fused_weights(tmp_path, engine):
    """diffusers reads no LoRA in BFL's module names (it loads one as a silent no-op); Solvent converts them."""
    from solvent.generation import LoraSpec
    from tests.flow_models import fuse_flux_deltas, write_flux_bfl_lora

    comps = build_flux()
    paths = write_flux_files(comps, tmp_path / "files")
    engine.store.add(paths.pop("path"), model_id="m", components=paths)
    engine.settings.loras_dir.mkdir(parents=True, exist_ok=True)
    deltas = write_flux_bfl_lora(comps["transformer"], engine.settings.loras_dir / "comfy-style.safetensors")
    styled = _ours(engine, "m", cfg=3.5, loras=[LoraSpec("comfy-style", 0.8)])
    fused = build_flux()
    fuse_flux_deltas(fused["transformer"], deltas, 0.8)
    assert _same(styled, _bare("flux", fused, cfg=3.5)) <= 2
    assert _same(styled, _bare("flux", build_flux(), cfg=3.5)) > 4


def test_a_lora_that_matches_nothing_is_refused(tmp_path, engine):
    from solvent.errors import IncompatibleLora
    from solvent.generation import LoraSpec

    paths = write_flux_files(build_flux(), tmp_path / "files")
    engine.store.add(paths.pop("path"), model_id="m", components=paths)
    engine.settings.loras_dir.mkdir(parents=True, exist_ok=True)
    save_file({"unet.single_transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 32),  # another model's
               "unet.single_transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(32, 4)},
              str(engine.settings.loras_dir / "elsewhere.safetensors"))
    with pytest.raises(IncompatibleLora) as e:
        _ours(engine, "m", cfg=3.5, loras=[LoraSpec("elsewhere", 1.0)])
    assert e.value.field == "loras" and "no tensor" in e.value.message


def test_fp8_weights_store_the_transformer_in_fp8_and_halve_its_estimate(tmp_path):
    from solvent.config import Settings
    from solvent.root import build_engine

    paths = write_flux_files(build_flux(), tmp_path / "files")
    main = paths.pop("path")
    images, engines = {}, {}
    for fp8 in (False, True):
        eng = engines[fp8] = build_engine(Settings(home=tmp_path / f"home-{fp8}", fp8_weights=fp8))
        eng.store.add(main, model_id="m", components=paths)
        images[fp8] = _ours(eng, "m", cfg=3.5)
    assert next(engines[True].load("m").pipe.transformer.parameters()).dtype == torch.float8_e4m3fn
    assert engines[True].load("m").nbytes < engines[False].load("m").nbytes
    diff = _same(images[True], np.asarray(images[False].images[0]).astype(int))
    assert 0 < diff < 80, diff  # fp8 storage rounding, computed in fp32
    denoiser, rest = engines[True].store.parameter_counts(engines[True].store.get("m"))
    assert denoiser == sum(p.numel() for p in build_flux()["transformer"].parameters()) and rest > 0


@pytest.mark.parametrize("model", ["sd3m", "flux"])
def test_progress_previews_of_flow_latents(flow_engine, model):
    """Flux's latents are packed 2×2 into tokens: the preview unpacks them before decoding."""
    events = []
    req = GenerationRequest(prompt="a red cube", model=model, steps=2, seed=5, width=SIZE, height=SIZE)
    flow_engine.generate(req, progress=events.append)
    assert [(e.step, e.total) for e in events] == [(1, 2), (2, 2)]
    img = events[-1].preview()
    assert img.size == (SIZE, SIZE) and img.mode == "RGB"


def test_a_full_size_vae_preview_maps_latents_without_decoding(engine):
    from types import SimpleNamespace

    from solvent.generation.families import FAMILIES

    pipe = SimpleNamespace(vae=SimpleNamespace(config=SimpleNamespace(block_out_channels=[128, 256, 512, 512])))
    r = SimpleNamespace(family=FAMILIES["sd3"], width=256, height=256)
    img = engine._flow_preview(pipe, torch.randn(1, 16, 32, 32, generator=torch.Generator().manual_seed(0)), r)
    arr = np.asarray(img)
    assert img.size == (32, 32) and arr.min() == 0 and arr.max() >= 254  # stretched to the visible range


def test_a_flux_vae_file_from_the_store_decodes_for_flux(tmp_path, engine):
    comps = build_flux()
    paths = write_flux_files(comps, tmp_path / "files")
    engine.store.add(paths["path"], model_id="flux", components={k: v for k, v in paths.items() if k != "path"})
    vae = engine.store.add(paths["vae"], model_id="ae")
    assert (vae.kind, vae.latent_channels) == ("vae", 16)
    assert engine.fits(engine.store.get("flux"))["vaes"] == ["ae"]
    own = _ours(engine, "flux", cfg=3.5)
    assert _same(_ours(engine, "flux", cfg=3.5, vae="ae"), np.asarray(own.images[0]).astype(int)) <= 1  # same weights


@pytest.mark.parametrize("model", ["sd3m", "flux"])
def test_a_latent_hires_fix_on_flow_models_is_the_two_passes_by_hand(flow_engine, model):
    import torch

    from solvent.generation import GenerationRequest, Hires

    kw = dict(model=model, prompt="a red kite", steps=3, seed=4, width=SIZE, height=SIZE)
    out = flow_engine.generate(GenerationRequest(**kw, hires=Hires(scale=1.5, upscaler="Latent", denoising=0.7)))
    lat = flow_engine.generate(GenerationRequest(**kw, latents_out=True)).images  # (Flux's unpacked)
    side = 384 // (SIZE // lat.shape[-1])
    up = torch.nn.functional.interpolate(lat.float(), size=(side, side), mode="bilinear").to(lat.dtype)
    by_hand = flow_engine.generate(GenerationRequest(**{**kw, "width": 384, "height": 384}, init_latents=up,
                                                     strength=0.7))
    assert out.images[0].size == (384, 384) and out.usage.steps_run == 3 + by_hand.usage.steps_run
    assert np.abs(np.asarray(out.images[0]).astype(int) - np.asarray(by_hand.images[0]).astype(int)).max() == 0
