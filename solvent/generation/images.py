"""Reading input images safely: size limits, decompression bombs, masks that must match."""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import InvalidImage


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def png_b64(img: Image.Image) -> str:
    """An image as base64 PNG (what every surface's JSON carries)."""
    return b64(png_bytes(img))


def decode_base64(data: str, field: str) -> bytes:
    """Base64 (optionally a `data:image/...;base64,` URL) → bytes (a clear 400 naming the field when it is not)."""
    if not isinstance(data, str) or not data:
        raise InvalidImage(f"`{field}` must be a base64-encoded image.", field=field)
    if data.startswith("data:"):
        _, _, data = data.partition(",")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidImage(f"`{field}` is not valid base64: {e}.", field=field) from e


def load_image(
    data: bytes | str | Path | Image.Image,
    field: str,
    *,
    max_bytes: int,
    max_pixels: int,
    mode: str | None = "RGB",
    header_only: bool = False,
) -> Image.Image:
    """Open an image from bytes, a base64 string or a path, refusing oversized and bomb images.

    The pixel count is read from the header before any pixel is decoded. `mode=None` keeps the image's own
    mode; `header_only` returns the unloaded image (its size and mode are known, no pixel decoded).
    """
    if isinstance(data, Image.Image):
        img = data
    else:
        if isinstance(data, Path):
            try:
                data = data.read_bytes()
            except OSError as e:
                raise InvalidImage(f"`{field}` file cannot be read: {e}", field=field, value=str(data)) from e
        elif isinstance(data, str):
            data = decode_base64(data, field)
        if len(data) > max_bytes:
            raise InvalidImage(
                f"`{field}` is {len(data)} bytes; at most {max_bytes} are accepted.", field=field, value=len(data)
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
                w, h = img.size
                if w * h > max_pixels:
                    raise InvalidImage(
                        f"`{field}` is {w}×{h} = {w * h} pixels; at most {max_pixels} are accepted "
                        "(decompression bombs are refused).",
                        field=field,
                        value=f"{w}x{h}",
                    )
                if header_only:
                    return img
                img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise InvalidImage(f"`{field}` is a decompression bomb and was refused: {e}", field=field) from e
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise InvalidImage(f"`{field}` is not a readable image: {e}", field=field) from e
    w, h = img.size
    if w * h > max_pixels:
        raise InvalidImage(
            f"`{field}` is {w}×{h} = {w * h} pixels; at most {max_pixels} are accepted.", field=field, value=f"{w}x{h}"
        )
    if mode is None:
        return img
    if mode == "L" and img.mode in ("RGBA", "LA"):
        # A mask given with transparency: transparent = repaint (OpenAI's convention) is the caller's
        # job; here the alpha-less luminance is used.
        img = img.convert("RGB")
    return img.convert(mode)
