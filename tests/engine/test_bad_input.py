"""Every bad input named in the engine issue gets a typed error naming the field and its value."""

import base64
import io
import struct
import zlib

import pytest
from PIL import Image

from solvent.errors import InvalidImage, LoraNotFound, ModelNotFound, SolventError, ValidationFailed
from solvent.generation import GenerationRequest, LoraSpec
from solvent.generation.images import load_image

LIMITS = dict(max_bytes=1_000_000, max_pixels=1024 * 1024)


@pytest.mark.parametrize(
    "kwargs, field, shown",
    [
        ({"model": "nope"}, "model", "'nope'"),
        ({"sampler": "K_FOO"}, "sampler", "'K_FOO'"),
        ({"width": 65}, "width", "65"),
        ({"width": 4096}, "width", "4096"),
        ({"height": 16}, "height", "16"),
        ({"steps": 0}, "steps", "0"),
        ({"steps": 151}, "steps", "151"),
        ({"steps": "20"}, "steps", "'20'"),
        ({"cfg_scale": -1}, "cfg_scale", "-1"),
        ({"cfg_scale": 99}, "cfg_scale", "99"),
        ({"seed": 2**32}, "seed", "4294967296"),
        ({"seed": -5}, "seed", "-5"),
        ({"batch_size": 0}, "batch_size", "0"),
        ({"batch_size": 1000}, "batch_size", "1000"),
        ({"prompt": "red " * 400}, "prompt", "400 tokens"),
        ({"negative_prompt": "blue " * 400}, "negative_prompt", "400 tokens"),
        ({"prompt": 12}, "prompt", "int"),
        ({"mask": Image.new("L", (64, 64))}, "mask", "init_image"),
        ({"init_image": Image.new("RGB", (64, 64)), "strength": 0}, "strength", "0"),
        ({"init_image": Image.new("RGB", (64, 64)), "strength": 1.5}, "strength", "1.5"),
        ({"loras": [LoraSpec("ghost", 1.0)]}, "loras", "'ghost'"),
    ],
)
def test_bad_request_fields(engine, kwargs, field, shown):
    with pytest.raises(SolventError) as e:
        engine.generate(GenerationRequest(prompt=kwargs.pop("prompt", "x"), **kwargs))
    assert e.value.field == field
    assert shown in e.value.message
    assert 400 <= e.value.status < 500


def test_error_types(engine):
    with pytest.raises(ModelNotFound) as e:
        engine.generate(GenerationRequest(model="nope"))
    assert e.value.status == 404 and "solvent-tiny" in e.value.message  # lists what is installed
    with pytest.raises(LoraNotFound):
        engine.generate(GenerationRequest(loras=[LoraSpec("ghost")]))
    with pytest.raises(ValidationFailed):
        engine.generate(GenerationRequest(steps=-1))


def _png(w, h):
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


def test_images_load_from_bytes_base64_and_data_urls():
    data = _png(8, 8)
    b64 = base64.b64encode(data).decode()
    for src in (data, b64, "data:image/png;base64," + b64):
        assert load_image(src, "init_image", **LIMITS).size == (8, 8)


def test_bad_base64():
    with pytest.raises(InvalidImage) as e:
        load_image("not*base64!", "init_image", **LIMITS)
    assert e.value.field == "init_image" and "base64" in e.value.message


def test_unreadable_image():
    with pytest.raises(InvalidImage) as e:
        load_image(b"GIF89a garbage", "mask", **LIMITS)
    assert e.value.field == "mask" and "not a readable image" in e.value.message


def test_oversized_upload():
    with pytest.raises(InvalidImage) as e:
        load_image(b"0" * 2_000_000, "init_image", **LIMITS)
    assert "2000000 bytes" in e.value.message


def _bomb_png(w: int, h: int) -> bytes:
    """A valid PNG header declaring a huge image, with a tiny (never decoded) body."""
    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(InvalidImage) as e:
        load_image(_bomb_png(60000, 60000), "init_image", **LIMITS)
    assert "decompression bomb" in e.value.message and e.value.field == "init_image"
    with pytest.raises(InvalidImage) as e:  # above Solvent's own limit, below Pillow's
        load_image(_bomb_png(3000, 3000), "init_image", **LIMITS)
    assert e.value.value == "3000x3000" and "decompression bombs are refused" in e.value.message
