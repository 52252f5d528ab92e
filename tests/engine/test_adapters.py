"""IP-Adapters (with their CLIP image encoders) and T2I-Adapters: tiny files written in the layouts people
download, recognised by the store, images equal to the bare diffusers pipeline with the same seed, and every bad
input a clear error naming the field."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from solvent.errors import (
    IncompatibleAdapter,
    ModelNotFound,
    UnsafeCheckpoint,
    UnsupportedModel,
    ValidationFailed,
)
from solvent.generation import GenerationRequest
from solvent.generation.control import ControlUnit, ImagePrompt
from solvent.tiny import weights_dir
from tests.adapter_files import tiny_t2i_adapter, write_image_encoder, write_ip_adapter
from tests.engine.test_controlnet import silhouette


def reference(colour="red", size=48) -> Image.Image:
    img = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(img).rectangle((8, 12, 40, 36), fill=colour)
    return img


def _unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(str(weights_dir() / "unet"))


def _bare(engine, **components):
    """diffusers' own pipeline over solvent-tiny's files, with the engine's scheduler config."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(weights_dir()), local_files_only=True, safety_checker=None,
                                                   torch_dtype=torch.float32,
                                                   feature_extractor=None, requires_safety_checker=False,
                                                   tokenizer=engine.load("solvent-tiny").pipe.tokenizer)
    pipe.scheduler = EulerDiscreteScheduler.from_config(engine.load("solvent-tiny").scheduler_config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def ip(engine, tmp_path):
    """A plain IP-Adapter for solvent-tiny and its image encoder, installed."""
    write_image_encoder(tmp_path / "image_encoder")
    enc = engine.store.add(tmp_path / "image_encoder", model_id="tiny-vit")
    write_ip_adapter(tmp_path / "ip-adapter_tiny.safetensors", _unet())
    rec = engine.store.add(tmp_path / "ip-adapter_tiny.safetensors", model_id="ip-tiny")
    return rec, enc, tmp_path


def test_the_store_recognises_ip_adapters_and_image_encoders(engine, ip, tmp_path):
    rec, enc, _ = ip
    assert (enc.kind, enc.details) == ("image_encoder", {"hidden_size": 32, "projection_dim": 16})
    assert (rec.kind, rec.cross_attention_dim, rec.image_encoder) == ("ip_adapter", 64, "tiny-vit")
    assert rec.details == {"variant": "plain", "reads": "embeds", "image_dim": 16, "layers": 7}
    assert engine.store.cross_attention_layers(engine.store.get("solvent-tiny")) == 7
    plus = engine.store.add(write_ip_adapter_path(tmp_path, "plus", 32), model_id="ip-plus")
    assert plus.details["variant"] == "plus" and plus.details["reads"] == "hidden"
    full = engine.store.add(write_ip_adapter_path(tmp_path, "full", 32), model_id="ip-full")
    assert full.details["variant"] == "full"
    with pytest.raises(UnsupportedModel) as e:
        engine.store.add(write_ip_adapter_path(tmp_path, "faceid", 512), model_id="ip-faceid")
    assert "FaceID" in e.value.message and "insightface" in e.value.message
    write_image_encoder(tmp_path / "vit.safetensors", single_file=True)
    single = engine.store.add(tmp_path / "vit.safetensors", model_id="vit-file")
    assert single.details == enc.details
    assert {r.id for r in engine.store.list("ip_adapter")} == {"ip-tiny", "ip-plus", "ip-full"}


def write_ip_adapter_path(tmp_path, variant, dim):
    path = tmp_path / f"ip-{variant}.safetensors"
    write_ip_adapter(path, _unet(), variant, dim, seed=1)
    return path


def test_an_ip_adapter_needs_its_image_encoder(engine, tmp_path):
    write_ip_adapter(tmp_path / "lonely.safetensors", _unet())
    with pytest.raises(ModelNotFound) as e:
        engine.store.add(tmp_path / "lonely.safetensors")
    assert e.value.field == "image_encoder" and "needs a CLIP image encoder" in e.value.message
    write_image_encoder(tmp_path / "wide", projection=24)  # gives 24-wide embeddings; the adapter reads 16
    engine.store.add(tmp_path / "wide", model_id="wide-vit")
    with pytest.raises(ValidationFailed) as e:
        engine.store.add(tmp_path / "lonely.safetensors", image_encoder="wide-vit")
    assert "24 wide" in e.value.message and "16 wide" in e.value.message


def test_pickled_adapters_need_the_unsafe_flag_and_are_stored_as_safetensors(engine, ip, tmp_path):
    write_ip_adapter(tmp_path / "ip.bin", _unet(), seed=5)
    with pytest.raises(UnsafeCheckpoint):
        engine.store.add(tmp_path / "ip.bin")
    rec = engine.store.add(tmp_path / "ip.bin", allow_pickle=True, model_id="ip-from-bin")
    assert rec.kind == "ip_adapter" and rec.path.endswith(".safetensors") and rec.origin.endswith("ip.bin")
    torch.save({"string_to_param": {"*": torch.randn(2, 64)}, "name": "pt-emb", "step": 10}, tmp_path / "pt-emb.pt")
    with pytest.raises(UnsafeCheckpoint):
        engine.store.add(tmp_path / "pt-emb.pt")
    emb = engine.store.add(tmp_path / "pt-emb.pt", allow_pickle=True)
    assert (emb.id, emb.kind, emb.cross_attention_dim) == ("pt-emb", "embedding", 64)
    out = engine.generate(GenerationRequest(prompt="a pt-emb circle", seed=1, steps=2))
    assert "pt-emb: " in out.infotexts[0]


def test_ip_adapter_output_equals_the_bare_diffusers_pipeline(engine, ip):
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    rec, enc, tmp = ip
    req = GenerationRequest(prompt="a circle", seed=3, steps=4, sampler="euler", cfg_scale=3.0,
                            ip_adapters=[ImagePrompt("ip-tiny", [reference()], [1.0], weight=0.7)])
    ours = np.asarray(engine.generate(req).images[0]).astype(int)

    pipe = _bare(engine)
    pipe.image_encoder = CLIPVisionModelWithProjection.from_pretrained(str(tmp / "image_encoder"))
    pipe.feature_extractor = CLIPImageProcessor(size=32, crop_size=32)
    pipe.load_ip_adapter(str(tmp), subfolder="", weight_name="ip-adapter_tiny.safetensors", image_encoder_folder=None)
    pipe.set_ip_adapter_scale(0.7)
    ref = pipe("a circle", negative_prompt="", ip_adapter_image=reference(), num_inference_steps=4,
               guidance_scale=3.0, width=64, height=64, generator=[torch.Generator().manual_seed(3)]).images[0]
    assert np.abs(ours - np.asarray(ref).astype(int)).max() <= 1
    plain = np.asarray(engine.generate(GenerationRequest(prompt="a circle", seed=3, steps=4, sampler="euler",
                                                         cfg_scale=3.0)).images[0]).astype(int)
    assert np.abs(ours - plain).max() > 10  # the reference changed the picture
    again = np.asarray(engine.generate(GenerationRequest(prompt="a circle", seed=3, steps=4, sampler="euler",
                                                         cfg_scale=3.0)).images[0]).astype(int)
    assert np.array_equal(plain, again)  # and nothing of it stayed attached to the model


def test_two_references_each_with_its_scale_equal_two_adapters_in_diffusers(engine, ip):
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    rec, enc, tmp = ip
    req = GenerationRequest(prompt="x", seed=8, steps=3, sampler="euler", cfg_scale=2.5, ip_adapters=[
        ImagePrompt("ip-tiny", [reference("red"), reference("blue")], [0.5, 1.5], weight=0.6)])
    out = engine.generate(req)
    ours = np.asarray(out.images[0]).astype(int)
    pipe = _bare(engine)
    pipe.image_encoder = CLIPVisionModelWithProjection.from_pretrained(str(tmp / "image_encoder"))
    pipe.feature_extractor = CLIPImageProcessor(size=32, crop_size=32)
    pipe.load_ip_adapter(str(tmp), subfolder="", weight_name=["ip-adapter_tiny.safetensors"] * 2,
                         image_encoder_folder=None)
    pipe.set_ip_adapter_scale([0.3, 0.9])
    ref = pipe("x", negative_prompt="", ip_adapter_image=[reference("red"), reference("blue")], num_inference_steps=3,
               guidance_scale=2.5, width=64, height=64, generator=[torch.Generator().manual_seed(8)]).images[0]
    assert np.abs(ours - np.asarray(ref).astype(int)).max() <= 1
    assert 'ControlNet 0: "Module: ip-adapter, Model: ip-tiny [' in out.infotexts[0]
    assert "Reference scales: 0.5, 1.5" in out.infotexts[0]
    assert out.params["ip_adapters"] == [{"model": "ip-tiny", "weight": 0.6, "scales": [0.5, 1.5]}]


@pytest.mark.parametrize("variant, dim", [("plus", 32), ("full", 32)])
def test_plus_and_full_face_variants_read_hidden_states_like_diffusers(engine, ip, variant, dim):
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    _, _, tmp = ip
    path = write_ip_adapter_path(tmp, variant, dim)
    engine.store.add(path, model_id=f"ip-{variant}")
    req = GenerationRequest(prompt="x", seed=2, steps=3, sampler="euler", cfg_scale=2.0,
                            ip_adapters=[ImagePrompt(f"ip-{variant}", [reference()], [1.0])])
    ours = np.asarray(engine.generate(req).images[0]).astype(int)
    pipe = _bare(engine)
    pipe.image_encoder = CLIPVisionModelWithProjection.from_pretrained(str(tmp / "image_encoder"))
    pipe.feature_extractor = CLIPImageProcessor(size=32, crop_size=32)
    pipe.load_ip_adapter(str(tmp), subfolder="", weight_name=path.name, image_encoder_folder=None)
    ref = pipe("x", negative_prompt="", ip_adapter_image=reference(), num_inference_steps=3, guidance_scale=2.0,
               width=64, height=64, generator=[torch.Generator().manual_seed(2)]).images[0]
    assert np.abs(ours - np.asarray(ref).astype(int)).max() <= 1


def test_ip_adapters_combine_with_img2img_inpainting_and_controlnets(engine, ip):
    init = Image.new("RGB", (64, 64), "green")
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 48, 48), fill=255)
    prompt = [ImagePrompt("ip-tiny", [reference()], [1.0])]
    for extra in ({"init_image": init, "strength": 0.8}, {"init_image": init, "mask": mask, "strength": 0.9},
                  {"controls": [ControlUnit("solvent-tiny-silhouette", silhouette())]}):
        a = engine.generate(GenerationRequest(prompt="x", seed=4, steps=4, **extra))
        b = engine.generate(GenerationRequest(prompt="x", seed=4, steps=4, ip_adapters=prompt, **extra))
        assert np.abs(np.asarray(a.images[0]).astype(int) - np.asarray(b.images[0]).astype(int)).max() > 5, extra


@pytest.mark.parametrize("unit, field, words", [
    (ImagePrompt("nope", [None], [1.0]), "ip_adapters[0].model", "not installed"),
    (ImagePrompt("tiny-vit", [None], [1.0]), "ip_adapters[0].model", "not an IP-Adapter"),
    (ImagePrompt("ip-tiny", [None], [1.0]), "ip_adapters[0].images[0]", "required"),
    (ImagePrompt("ip-tiny", [], []), "ip_adapters[0].images", "1 to 4"),
    (ImagePrompt("ip-tiny", [reference()], [3.0]), "ip_adapters[0].images[0].scale", "between 0 and 2"),
    (ImagePrompt("ip-tiny", [reference()], [1.0], weight=-1), "ip_adapters[0].weight", "between 0 and 2"),
])
def test_bad_image_prompts_name_the_field(engine, ip, unit, field, words):
    with pytest.raises((ValidationFailed, ModelNotFound)) as e:
        engine.generate(GenerationRequest(prompt="x", steps=2, ip_adapters=[unit]))
    assert e.value.field == field and words in e.value.message, e.value.message


def test_an_ip_adapter_of_another_model_is_refused_naming_both(engine, ip, tmp_path):
    from tests.tiny_models import build

    write_ip_adapter(tmp_path / "sd1-ip.safetensors", build("sd1")["unet"])  # 32-wide: made for another model
    engine.store.add(tmp_path / "sd1-ip.safetensors", model_id="sd1-ip")
    with pytest.raises(IncompatibleAdapter) as e:
        engine.generate(GenerationRequest(prompt="x", steps=2, ip_adapters=[ImagePrompt("sd1-ip", [reference()],
                                                                                        [1.0])]))
    assert "'sd1-ip'" in e.value.message and "'solvent-tiny'" in e.value.message


# -- T2I-Adapters ------------------------------------------------------------------------------------------


@pytest.fixture
def t2i(engine, tmp_path):
    net = tiny_t2i_adapter([32, 64, 128, 128], 8, xl=True)  # solvent-tiny's UNet is SDXL-shaped (see the engine)
    net.save_pretrained(tmp_path / "t2i", safe_serialization=True)
    return net, engine.store.add(tmp_path / "t2i", model_id="t2i-tiny")


def test_t2i_adapter_output_equals_the_bare_diffusers_adapter_pipeline(engine, t2i, tmp_path):
    from diffusers import StableDiffusionAdapterPipeline

    net, rec = t2i
    assert (rec.kind, rec.architecture, rec.details["adapter_type"]) == ("t2i_adapter", "sdxl", "full_adapter_xl")
    req = GenerationRequest(prompt="a circle", seed=6, steps=4, sampler="euler", cfg_scale=3.0,
                            controls=[ControlUnit("t2i-tiny", silhouette(), weight=0.8)])
    ours = np.asarray(engine.generate(req).images[0]).astype(int)
    base = _bare(engine)
    pipe = StableDiffusionAdapterPipeline(**{k: v for k, v in base.components.items() if k != "image_encoder"},
                                          adapter=net, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe("a circle", negative_prompt="", image=silhouette(), num_inference_steps=4, guidance_scale=3.0,
               adapter_conditioning_scale=0.8, width=64, height=64,
               generator=[torch.Generator().manual_seed(6)]).images[0]
    assert np.abs(ours - np.asarray(ref).astype(int)).max() <= 1
    plain = np.asarray(engine.generate(GenerationRequest(prompt="a circle", seed=6, steps=4, sampler="euler",
                                                         cfg_scale=3.0)).images[0]).astype(int)
    assert np.abs(ours - plain).max() > 10
    req.controls[0].guidance_end = 0.5  # (diffusers' SD adapter pipeline has no window; its SDXL one does)
    half = np.asarray(engine.generate(req).images[0]).astype(int)
    assert np.abs(half - ours).max() > 3 and np.abs(half - plain).max() > 3


def test_t2i_adapters_work_in_img2img_and_beside_a_controlnet(engine, t2i):
    init = Image.new("RGB", (64, 64), "green")
    for extra in ({"init_image": init, "strength": 0.8},
                  {"controls": [ControlUnit("solvent-tiny-silhouette", silhouette())]}):
        a = engine.generate(GenerationRequest(prompt="x", seed=4, steps=4, **extra))
        units = [*extra.get("controls", []), ControlUnit("t2i-tiny", silhouette())]
        b = engine.generate(GenerationRequest(prompt="x", seed=4, steps=4, **{**extra, "controls": units}))
        assert np.abs(np.asarray(a.images[0]).astype(int) - np.asarray(b.images[0]).astype(int)).max() > 5, extra


def test_a_t2i_adapter_file_in_the_diffusers_layout_loads_like_its_folder(engine, t2i, tmp_path):
    from safetensors.torch import save_file

    net, rec = t2i
    sd1 = tiny_t2i_adapter([320, 640, 1280, 1280], 8, xl=False)
    save_file({k: v.contiguous() for k, v in sd1.state_dict().items()}, str(tmp_path / "sd15.safetensors"))
    other = engine.store.add(tmp_path / "sd15.safetensors")
    assert (other.architecture, other.details["channels"], other.details["in_channels"]) == (
        "sd", [320, 640, 1280, 1280], 3)
    with pytest.raises(IncompatibleAdapter) as e:  # an SD 1.5 adapter on solvent-tiny
        engine.generate(GenerationRequest(prompt="x", steps=2, controls=[ControlUnit(other.id, silhouette())]))
    assert "T2I-Adapter for SD models" in e.value.message


@pytest.mark.parametrize("mode", ["prompt", "controlnet"])
def test_control_modes_change_the_image_and_stay_deterministic(engine, t2i, mode):
    def run(m, model):
        return np.asarray(engine.generate(GenerationRequest(prompt="x", seed=9, steps=3, controls=[
            ControlUnit(model, silhouette(), control_mode=m)])).images[0]).astype(int)

    for model in ("solvent-tiny-silhouette", "t2i-tiny"):
        balanced, steered = run("balanced", model), run(mode, model)
        assert np.abs(balanced - steered).max() > 3, (model, mode)
        assert np.array_equal(steered, run(mode, model))


def test_prompt_mode_scales_controlnet_residuals_like_sd_webui_controlnet():
    from solvent.engine.steering import soft_weights

    w = soft_weights(13)
    assert w[-1] == 1.0 and abs(w[0] - 0.825 ** 12) < 1e-12 and w == sorted(w)


# -- depth estimators --------------------------------------------------------------------------------------


def write_depth_estimator(folder):
    """A tiny DPT (MiDaS's architecture) depth-estimation folder, as transformers saves one."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(13)
    cfg = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=32,
                    patch_size=8, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
                    backbone_out_indices=[0, 1, 2, 3], reassemble_factors=[4, 2, 1, 0.5])
    model = DPTForDepthEstimation(cfg).eval()
    model.save_pretrained(str(folder))
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(str(folder))
    return model


def test_depth_needs_an_installed_estimator_then_runs_it(engine, tmp_path):
    unit = ControlUnit("solvent-tiny-silhouette", reference(size=64), "depth_midas")
    with pytest.raises(ValidationFailed) as e:
        engine.generate(GenerationRequest(prompt="x", steps=2, controls=[unit]))
    assert e.value.field == "controlnets[0].preprocessor" and "solvent models add FOLDER" in e.value.message
    model = write_depth_estimator(tmp_path / "dpt")
    rec = engine.store.add(tmp_path / "dpt", model_id="tiny-dpt")
    assert (rec.kind, rec.details) == ("estimator", {"task": "depth", "model_type": "dpt"})
    assert engine.fits(engine.store.get("solvent-tiny"))["estimators"] == ["depth"]
    out = engine.generate(GenerationRequest(prompt="x", seed=1, steps=2, controls=[
        ControlUnit("solvent-tiny-silhouette", reference(size=64), "depth_midas")]))
    assert 'Module: depth' in out.infotexts[0]
    from transformers import DPTImageProcessor

    from solvent.engine.adapters import depth_map

    depth = np.asarray(depth_map(model, DPTImageProcessor.from_pretrained(str(tmp_path / "dpt")), reference(size=64),
                                 torch.device("cpu")))
    assert depth.shape == (64, 64, 3) and depth.min() == 0 and depth.max() == 255  # normalised, near = bright
    with torch.no_grad():
        raw = model(pixel_values=DPTImageProcessor.from_pretrained(str(tmp_path / "dpt"))(
            images=reference(size=64), return_tensors="pt").pixel_values).predicted_depth[0]
    up = torch.nn.functional.interpolate(raw[None, None], size=(64, 64), mode="bicubic", align_corners=False)[0, 0]
    assert np.unravel_index(depth[:, :, 0].argmax(), (64, 64)) == np.unravel_index(int(up.argmax()), (64, 64))
