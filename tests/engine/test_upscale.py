"""Upscalers (spandrel) from files in their real layouts, added offline, equal to spandrel's own output; tiles
blended without seams; Lanczos built in; bad input named."""

import numpy as np
import pytest
import torch
from PIL import Image

from solvent.engine.upscale import spandrel, upscale_tensor
from solvent.errors import UnsafeCheckpoint, ValidationFailed
from tests.upscaler_files import esrgan, swinir, write


def _picture(w=40, h=28, seed=0) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype("uint8"))


def _spandrel_own(path, image: Image.Image) -> np.ndarray:
    """What spandrel itself makes of the file: its loader, its call, no Solvent code."""
    from safetensors.torch import load_file

    desc = spandrel().ModelLoader().load_from_state_dict(load_file(str(path))).eval()
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():
        y = desc(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    return (y * 255).round().astype(np.uint8)


@pytest.mark.parametrize("arch,scale", [("ESRGAN", 4), ("SwinIR", 2)])
def test_an_upscaler_file_is_recognised_and_equals_spandrel(tmp_path, engine, arch, scale):
    path = write(esrgan() if arch == "ESRGAN" else swinir(), tmp_path / f"4x-{arch}.safetensors")
    rec = engine.store.add(path, model_id="up")
    assert rec.kind == "upscaler" and rec.details == {"scale": scale, "architecture": arch, "channels": 3}
    img = _picture()
    out = engine.upscale(img, "up")
    assert out.image.size == (img.width * scale, img.height * scale) and out.passes == 1 and out.upscaler == "up"
    assert np.abs(np.asarray(out.image).astype(int) - _spandrel_own(path, img)).max() == 0


def test_a_real_esrgan_pth_needs_the_unsafe_flag_and_is_stored_as_safetensors(tmp_path, engine):
    path = write(esrgan(), tmp_path / "RealESRGAN_x4plus.pth")
    with pytest.raises(UnsafeCheckpoint):
        engine.store.add(path)
    rec = engine.store.add(path, allow_pickle=True, model_id="realesrgan")
    assert rec.kind == "upscaler" and rec.path.endswith(".safetensors") and rec.details["scale"] == 4


def test_scales_past_the_models_factor_run_it_again_then_resize(tmp_path, engine):
    engine.store.add(write(esrgan(), tmp_path / "x4.safetensors"), model_id="x4")
    img = _picture(16, 12)
    assert (r := engine.upscale(img, "x4", scale=8)).passes == 2 and r.image.size == (128, 96)
    assert (r := engine.upscale(img, "x4", scale=3)).passes == 1 and r.image.size == (48, 36)
    lan = engine.upscale(img, "lanczos", scale=2.5)
    assert lan.passes == 0 and lan.image.size == (40, 30) and lan.upscaler == "lanczos"
    for bad in (1, 0.5, 17, True):
        with pytest.raises(ValidationFailed) as e:
            engine.upscale(img, "x4", scale=bad)
        assert e.value.field == "scale"
    engine.settings.max_input_pixels = 100 * 100
    with pytest.raises(ValidationFailed) as e:
        engine.upscale(img, "x4", scale=16)  # 256×192 out
    assert e.value.field == "scale" and "SOLVENT_MAX_INPUT_PIXELS" in e.value.message
    with pytest.raises(ValidationFailed) as e:
        engine.upscale(img, "solvent-tiny")
    assert e.value.field == "upscaler" and "not an upscaler" in e.value.message


def test_tiles_blend_without_seams():
    from solvent.engine.upscale import describe

    desc = describe(esrgan().state_dict()).eval()
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        whole = upscale_tensor(desc, x, tile=1000)
        tiled = upscale_tensor(desc, x, tile=32, overlap=8)
    assert tiled.shape == whole.shape == (1, 3, 280, 360)
    # Tiles see less context at their edges, blended over the overlap: close, not equal, and no hard seam.
    assert (tiled - whole).abs().max() < 0.05
    rows = (tiled - whole).abs().mean(dim=(0, 1, 3))
    assert rows.max() < 4 * rows.mean() + 1e-3


def test_a_checkpoint_is_never_read_as_an_upscaler(tmp_path, engine):
    from tests.tiny_models import write_checkpoint

    write_checkpoint("sd1", tmp_path / "sd1.safetensors")
    assert engine.store.add(tmp_path / "sd1.safetensors", model_id="sd1").kind == "checkpoint"


def test_the_torchvision_stand_in_does_not_outlive_spandrels_import():
    """transformers probes for torchvision with importlib: a stand-in left in sys.modules would make it raise."""
    import importlib.util
    import sys

    spandrel()
    assert "torchvision" not in sys.modules or getattr(sys.modules["torchvision"], "__spec__", None) is not None
    importlib.util.find_spec("torchvision")  # None, or a real torchvision: never a ValueError
    from transformers.utils import is_torchvision_available

    is_torchvision_available()
