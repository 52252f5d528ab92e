"""Any size on any model: beyond the trained range an image is generated at the closest size the model supports
with the same aspect ratio, then upscaled — equal to doing both by hand, said in the metadata and infotext."""

import numpy as np
import pytest
from PIL import Image

from solvent.errors import ValidationFailed
from solvent.generation import GenerationRequest, parse_infotext
from solvent.generation.families import FAMILIES, OUTPUT_MAX_SIDE
from tests.upscaler_files import esrgan, write


@pytest.mark.parametrize("size,base", [((512, 512), (256, 256)), ((1024, 1024), (256, 256)),
                                       ((1792, 1024), (256, 144)), ((1024, 1536), (168, 256)),
                                       ((1536, 1024), (256, 168)), ((256, 256), (256, 256)), ((64, 96), (64, 96))])
def test_base_size_keeps_the_aspect_inside_the_trained_range(size, base):
    tiny = FAMILIES["tiny"]
    assert tiny.base_size(*size) == base
    bw, bh = base
    assert bw <= tiny.max_side and bh <= tiny.max_side and bw * bh <= tiny.max_pixels and bw % 8 == bh % 8 == 0
    assert abs(bw / bh - size[0] / size[1]) < 0.08  # the same aspect, to the family's multiple


def test_a_position_table_limit_is_a_base_size_not_a_refusal():
    assert FAMILIES["sd3"].base_size(2048, 1024, max_side=1024) == (1024, 512)
    assert FAMILIES["sd3"].base_size(1024, 1024, max_side=1024) == (1024, 1024)


def test_past_the_output_limit_is_refused_naming_the_field():
    with pytest.raises(ValidationFailed) as e:
        FAMILIES["tiny"].validate_size(OUTPUT_MAX_SIDE + 8, 64)
    assert e.value.field == "width" and str(OUTPUT_MAX_SIDE) in e.value.message


def test_a_512_request_on_tiny_is_the_256_image_upscaled(engine):
    kw = dict(prompt="a red circle on a blue background", seed=3, steps=4)
    engine.settings.size_upscaler = "lanczos"
    try:
        big = engine.generate(GenerationRequest(width=512, height=512, **kw))
    finally:
        engine.settings.size_upscaler = "auto"
    small = engine.generate(GenerationRequest(width=256, height=256, **kw))
    by_hand = small.images[0].resize((512, 512), Image.Resampling.LANCZOS)
    assert big.images[0].size == (512, 512)
    assert np.abs(np.asarray(big.images[0]).astype(int) - np.asarray(by_hand).astype(int)).max() == 0
    assert big.params["width"] == 512 and big.params["size_policy"] == {
        "generated_width": 256, "generated_height": 256, "upscaler": "lanczos"}
    info = parse_infotext(big.infotexts[0])
    assert info["Size"] == "512x512" and info["Generated size"] == "256x256" and info["Upscaler"] == "lanczos"
    assert big.usage.pixels == 512 * 512 and "size_policy" not in small.params


def test_the_size_upscaler_setting_names_an_installed_upscaler(tmp_path, engine):
    engine.store.add(write(esrgan(), tmp_path / "x4.safetensors"), model_id="x4")
    engine.settings.size_upscaler = "x4"
    try:
        kw = dict(prompt="a red circle", seed=2, steps=3)
        out = engine.generate(GenerationRequest(width=512, height=288, **kw))
        base = engine.generate(GenerationRequest(width=256, height=144, **kw))
        by_hand = engine.upscale(base.images[0], "x4", 2).image
        assert out.images[0].size == (512, 288) and out.params["size_policy"]["upscaler"] == "x4"
        assert np.abs(np.asarray(out.images[0]).astype(int) - np.asarray(by_hand).astype(int)).max() == 0
        engine.settings.size_upscaler = "nope"
        with pytest.raises(Exception) as e:
            engine.generate(GenerationRequest(width=512, height=512, **kw))
        assert "SOLVENT_SIZE_UPSCALER" in str(e.value)
    finally:
        engine.settings.size_upscaler = "lanczos"


def test_inpainting_past_the_range_keeps_the_input_at_full_size(engine):
    init = Image.fromarray((np.random.RandomState(0).rand(384, 384, 3) * 255).astype("uint8"))
    mask = Image.new("L", (384, 384), 0)
    mask.paste(255, (0, 0, 128, 128))
    out = engine.generate(GenerationRequest(prompt="a red circle", seed=1, steps=4, width=384, height=384,
                                            init_image=init, mask=mask, strength=1.0)).images[0]
    kept = np.asarray(out)[200:, 200:].astype(int)
    assert out.size == (384, 384) and np.abs(kept - np.asarray(init)[200:, 200:].astype(int)).max() == 0


def test_solvent_tiny_is_upscaled_by_its_own_upscaler_by_default(engine):
    if engine.store.list("upscaler") == []:
        pytest.skip("solvent-tiny-upscale's weights are not in this install")
    kw = dict(prompt="a red circle on a blue background", seed=3, steps=4)
    big = engine.generate(GenerationRequest(width=1024, height=1024, **kw))
    small = engine.generate(GenerationRequest(width=256, height=256, **kw))
    by_hand = engine.upscale(small.images[0], "solvent-tiny-upscale", 4).image
    assert big.params["size_policy"]["upscaler"] == "solvent-tiny-upscale"
    assert np.abs(np.asarray(big.images[0]).astype(int) - np.asarray(by_hand).astype(int)).max() == 0
