"""Image metadata: AUTOMATIC1111's `parameters` text (read by other tools and image sites) plus a
Solvent JSON chunk, in PNG text chunks or, for WEBP/JPEG, the EXIF UserComment as A1111 writes it."""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image, PngImagePlugin

from ..errors import ValidationFailed

FORMATS = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG", "jpg": "JPEG"}
MIME = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg", "jpg": "image/jpeg"}
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286


def infotext(
    *,
    prompt: str,
    negative_prompt: str,
    steps: int,
    sampler_label: str,
    cfg_scale: float,
    seed: int,
    width: int,
    height: int,
    model_hash: str,
    model_name: str,
    strength: float | None = None,
    loras: list[tuple[str, float]] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """The `parameters` text exactly in AUTOMATIC1111's layout."""
    fields: dict[str, Any] = {
        "Steps": steps,
        "Sampler": sampler_label,
        "CFG scale": _num(cfg_scale),
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model hash": model_hash,
        "Model": model_name,
    }
    if strength is not None:
        fields["Denoising strength"] = _num(strength)
    if loras:
        fields["Lora weights"] = ", ".join(f"{n}: {_num(w)}" for n, w in loras)
    fields.update(extra or {})
    line = ", ".join(f"{k}: {_quote(v)}" for k, v in fields.items())
    text = prompt
    if negative_prompt:
        text += f"\nNegative prompt: {negative_prompt}"
    return f"{text}\n{line}"


def with_fields(text: str, fields: dict[str, Any]) -> str:
    """An infotext with `fields` added to (or replacing those in) its parameters line, before `Version`."""
    head, _, line = text.rpartition("\n")
    pairs = [(k, v) for k, v in _param_fields(line) if k not in fields]
    at = next((i for i, (k, _) in enumerate(pairs) if k == "Version"), len(pairs))
    pairs[at:at] = [(k, _quote(v)) for k, v in fields.items()]
    return f"{head}\n" + ", ".join(f"{k}: {v}" for k, v in pairs)


def _num(v: float) -> str:
    return f"{v:g}"


def _quote(v: Any) -> str:
    s = str(v)
    return json.dumps(s) if ("," in s or ":" in s or "\n" in s) else s


def _param_fields(line: str) -> list[tuple[str, str]]:
    r"""`Key: value, Key: "quoted, value", …` in one left-to-right pass (linear in the line's length; a regex
    with a `[\w ]+:` prefix tried at every position is quadratic on a long line with no colon)."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(line)
    while i < n:
        colon = line.find(":", i)
        if colon < 0:
            break
        key = line[i:colon]
        comma = key.rfind(",")
        if comma >= 0:  # text with no colon before the last comma is not a field
            key = key[comma + 1:]
        k = colon + 1
        while k < n and line[k] == " ":
            k += 1
        if k < n and line[k] == '"':
            m = k + 1
            while m < n and line[m] != '"':
                m += 2 if line[m] == "\\" else 1
            value, end = line[k:m + 1], line.find(",", m + 1)
        else:
            end = line.find(",", k)
            value = line[k:end if end >= 0 else n]
        key = key.strip()
        if key and (key[0].isalnum() or key[0] == "_") and all(c.isalnum() or c in "_ -/" for c in key):
            out.append((key, value))
        i = end + 1 if end >= 0 else n
    return out


def parse_infotext(text: str) -> dict[str, Any]:
    """Parse a `parameters` text into prompt, negative prompt and the key/value fields (linear time)."""
    lines = text.strip().split("\n")
    last = lines[-1] if lines else ""
    params: dict[str, Any] = {}
    fields = _param_fields(last)
    if len(fields) >= 3:
        lines = lines[:-1]
        for key, value in fields:
            value = value.strip()
            if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
                try:
                    value = json.loads(value)
                except ValueError:
                    value = value[1:-1]
            params[key] = value
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    return {"prompt": "\n".join(prompt), "negative_prompt": "\n".join(negative), **params}


def normalise_format(fmt: str, field: str = "output_format") -> str:
    key = (fmt or "png").lower()
    if key not in FORMATS:
        raise ValidationFailed(
            f"`{field}` must be one of png, webp, jpeg but is {fmt!r}.", field=field, value=fmt
        )
    return "jpeg" if key == "jpg" else key


def encode_image(img: Image.Image, fmt: str, parameters: str, solvent: dict[str, Any] | None = None,
                 quality: int | None = None) -> bytes:
    """Encode with metadata: PNG text chunks, or an EXIF UserComment for WEBP/JPEG (at `quality`, default 92 / 90)."""
    fmt = normalise_format(fmt)
    buf = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", parameters)
        if solvent is not None:
            info.add_itxt("solvent", json.dumps(solvent, sort_keys=True, default=str))
        img.save(buf, format="PNG", pnginfo=info)
    else:
        exif = Image.Exif()
        exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = b"UNICODE\x00" + parameters.encode("utf-16-be")
        kwargs = {"quality": quality if quality is not None else (92 if fmt == "jpeg" else 90)}
        keep = fmt == "webp" and img.mode == "RGBA"  # WEBP has an alpha channel (a cut-out keeps it); JPEG has none
        (img if keep else img.convert("RGB")).save(buf, format=FORMATS[fmt], exif=exif.tobytes(), **kwargs)
    return buf.getvalue()


def read_metadata(data: bytes) -> tuple[str | None, dict[str, Any] | None]:
    """(`parameters` text, Solvent JSON) from an image written by Solvent or AUTOMATIC1111."""
    img = Image.open(io.BytesIO(data))
    text = img.info.get("parameters")
    solvent = img.info.get("solvent")
    if text is None:
        raw = img.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
        if isinstance(raw, bytes):
            if raw.startswith(b"UNICODE\x00"):
                body = raw[8:]
                text = body.decode("utf-16-be" if body[:1] == b"\x00" or not body[1:2] == b"\x00" else "utf-16-le")
            else:
                text = raw.decode("utf-8", "replace")
        elif isinstance(raw, str):
            text = raw
    return text, (json.loads(solvent) if solvent else None)
