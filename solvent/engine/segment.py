"""Segmenters: text-prompted segmentation models that find what a prompt names in an image.

A segmenter is a transformers CLIPSeg folder (`CLIPSegForImageSegmentation`, e.g. CIDAS/clipseg-rd64-refined
downloaded by the operator) added with `solvent models add FOLDER`, loaded offline from its own files. It gives
each pixel the probability that it shows the prompt; Solvent uses that as a soft alpha (remove the background:
keep the subject) or, thresholded and grown, as an inpainting mask (search and replace, search and recolor).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

SEGMENTER_ARCHITECTURES = ("CLIPSegForImageSegmentation",)
THRESHOLD = 0.5  # a pixel is in the found region when its probability is at least this


def segmenter_info(cfg: dict) -> dict | None:
    """The details of a segmenter folder's config (None when the config is not one)."""
    if any(a in SEGMENTER_ARCHITECTURES for a in cfg.get("architectures") or []) or cfg.get("model_type") == "clipseg":
        return {"task": "segment", "model_type": "clipseg", "prompted": True}
    return None


def load_segmenter(path: Path):
    """(model, processor) of a CLIPSeg folder (fp32, CPU), from its own files only."""
    import torch
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    model = CLIPSegForImageSegmentation.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    return model.eval(), CLIPSegProcessor.from_pretrained(str(path), local_files_only=True)


def probability(model, processor, img: Image.Image, prompt: str, device) -> Image.Image:
    """Where `img` shows `prompt`: a greyscale image of `img`'s size, 255 = surely, 0 = surely not (the model's
    sigmoid, resized bilinearly from its own resolution)."""
    import numpy as np
    import torch

    inputs = processor(text=[prompt], images=[img.convert("RGB")], padding="max_length", truncation=True,
                       return_tensors="pt")
    dtype = next(model.parameters()).dtype
    with torch.inference_mode():
        logits = model(input_ids=inputs["input_ids"].to(device), attention_mask=inputs["attention_mask"].to(device),
                       pixel_values=inputs["pixel_values"].to(device, dtype)).logits
        logits = logits.reshape(1, 1, *logits.shape[-2:]).float()
        prob = torch.nn.functional.interpolate(logits, size=(img.height, img.width), mode="bilinear",
                                               align_corners=False)[0, 0].sigmoid()
    return Image.fromarray((prob * 255).round().clamp(0, 255).byte().cpu().numpy().astype(np.uint8), "L")


def region(prob: Image.Image, threshold: float = THRESHOLD) -> Image.Image:
    """The found region of a probability map as a mask (white = found)."""
    cut = round(threshold * 255)
    return prob.point(lambda v: 255 if v >= cut else 0)


def cut_out(img: Image.Image, prob: Image.Image) -> Image.Image:
    """`img` with the probability map as its alpha: the subject kept, the rest transparent."""
    out = img.convert("RGBA")
    out.putalpha(prob)
    return out
