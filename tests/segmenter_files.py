"""A tiny CLIPSeg segmenter folder as transformers saves one (config, safetensors weights, processor and tokenizer
files), written by the tests: the real layout of CIDAS/clipseg-rd64-refined at a few hundred kilobytes.

Its weights are random, so it finds nothing in particular; `calibrate` moves the decoder's last bias so that about
half of a given image is found for a given prompt, which gives the tests a region that is neither empty nor all."""

from __future__ import annotations

from pathlib import Path

import torch

TOKENIZER = Path(__file__).resolve().parents[1] / "solvent" / "generation" / "assets" / "clip_tokenizer"


def write_segmenter(folder: Path, image=None, prompt: str = "the red circle", seed: int = 7):
    """The folder's model (in memory, as saved); calibrated on (`image`, `prompt`) when an image is given."""
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        CLIPTokenizer,
        ViTImageProcessor,
    )

    torch.manual_seed(seed)
    cfg = CLIPSegConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
                     "max_position_embeddings": 77},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16, reduce_dim=16, extract_layers=[1, 2], decoder_num_attention_heads=2,
        decoder_intermediate_size=32)
    model = CLIPSegForImageSegmentation(cfg).eval()
    processor = CLIPSegProcessor(
        image_processor=ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.485, 0.456, 0.406],
                                          image_std=[0.229, 0.224, 0.225]),
        tokenizer=CLIPTokenizer(str(TOKENIZER / "vocab.json"), str(TOKENIZER / "merges.txt")))
    if image is not None:
        calibrate(model, processor, image, prompt)
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    return model


def logits(model, processor, image, prompt: str) -> torch.Tensor:
    """The model's own answer, as transformers' documentation runs it."""
    inputs = processor(text=[prompt], images=[image.convert("RGB")], padding="max_length", return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs).logits
    return out.reshape(-1, *out.shape[-2:])[0]


def calibrate(model, processor, image, prompt: str) -> None:
    """Shift the last decoder bias so the median logit on (`image`, `prompt`) is 0: about half the image found."""
    median = logits(model, processor, image, prompt).median()
    last = model.decoder.transposed_convolution
    last = last[-1] if isinstance(last, torch.nn.Sequential) else last  # the refined variant ends in a sequence
    with torch.no_grad():
        last.bias -= median
