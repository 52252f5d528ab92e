"""The `solvent` command line. Every command has `--help`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ..errors import SolventError
from ..generation.families import PRESETS


def _size(text: str) -> tuple[int, int]:
    try:
        w, _, h = text.lower().partition("x")
        return int(w), int(h or w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 512x512 but is {text!r}") from None


def _lora(text: str):
    from ..generation import LoraSpec

    name, _, weight = text.rpartition(":") if ":" in text else (text, "", "1")
    try:
        return LoraSpec(name or text, float(weight or 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lora must look like NAME:WEIGHT but is {text!r}") from None


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def _out_paths(out: Path, n: int) -> list[Path]:
    if out.is_dir() or str(out).endswith(os.sep):
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return [out / f"solvent-{stamp}-{i}.png" for i in range(n)]
    if n == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix or '.png'}") for i in range(n)]


# ---------------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------------


def cmd_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..config import get_settings
    from ..generation import GenerationRequest
    from ..generation.images import load_image
    from ..generation.metadata import normalise_format
    from ..root import build_engine

    settings = get_settings()
    limits = dict(max_bytes=settings.max_input_bytes, max_pixels=settings.max_input_pixels)
    init = load_image(Path(args.init_image), "init_image", **limits) if args.init_image else None
    mask = load_image(Path(args.mask), "mask", mode="L", **limits) if args.mask else None
    width, height = args.size if args.size else (None, None)
    req = GenerationRequest(
        prompt=args.prompt, negative_prompt=args.negative, model=args.model, width=width, height=height,
        steps=args.steps, cfg_scale=args.cfg, sampler=args.sampler, seed=args.seed, batch_size=args.n,
        init_image=init, strength=args.strength, mask=mask, loras=args.lora or [], shift=args.shift,
    )
    paths = _out_paths(Path(args.out), args.n)
    formats = [normalise_format(p.suffix.lstrip(".") or "png", "out") for p in paths]
    engine = build_engine(settings)
    t0 = time.perf_counter()
    bars: list = []  # created at the first step, so validation errors print cleanly

    def progress(ev):
        if not bars:
            bars.append(tqdm(total=ev.total, unit="step", desc="generating", disable=args.quiet, leave=False))
        bars[0].total = ev.total
        bars[0].n = ev.step
        bars[0].refresh()

    try:
        result = engine.generate(req, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    elapsed = time.perf_counter() - t0
    for i, (path, fmt) in enumerate(zip(paths, formats, strict=True)):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(result.encode(i, fmt))
        os.replace(tmp, path)  # never a half-written image
        print(f"{path}  seed {result.seeds[i]}")
    u = result.usage
    print(
        f"{u.images} image(s) {result.params['width']}x{result.params['height']} with {u.model_id} in "
        f"{elapsed:.2f} s (device {u.device_seconds:.2f} s on {u.device} {u.dtype}, {u.steps_run} steps"
        f"{f', load {u.load_seconds:.2f} s' if u.load_seconds else ''}, peak memory {_human(u.peak_memory_bytes)})"
    )
    if args.json:
        print(json.dumps({"files": [str(p) for p in paths], "seeds": result.seeds, "usage": u.to_dict()}))
    return 0


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------


def _store():
    from ..config import get_settings
    from ..root import build_store

    return build_store(get_settings())


def cmd_models_list(args: argparse.Namespace) -> int:
    records = _store().list(None if args.kind == "all" else args.kind)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
        return 0
    print(f"{'ID':<28} {'KIND':<13} {'FAMILY':<6} {'FORMAT':<12} {'SIZE':>10}  {'HASH':<10}  SOURCE")
    for r in records:
        note = f" (reads {r.image_encoder})" if r.image_encoder else ""
        family = "-" if r.kind == "upscaler" else r.family  # an upscaler serves every family
        print(f"{r.id:<28} {r.kind:<13} {family:<6} {r.format:<12} {_human(r.size_bytes):>10}  {r.short_hash:<10}  "
              f"{r.source}{note}")
    return 0


def cmd_models_default_vae(args: argparse.Namespace) -> int:
    record = _store().set_default_vae(args.id, None if args.vae.lower() == "none" else args.vae)
    print(f"{record.id}: requests that name no VAE get {record.default_vae or 'its own VAE'}")
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    print(json.dumps(_store().get(args.id).to_dict(), indent=2))
    return 0


def cmd_models_add(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    bar = tqdm(total=0, unit="B", unit_scale=True, desc="hashing", disable=args.quiet, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        rec = _store().add(
            args.path, model_id=args.id, family=args.family, allow_pickle=args.unsafe_pickle, link=args.link,
            prediction_type=args.prediction_type, license_name=args.license or "", license_url=args.license_url or "",
            image_encoder=args.image_encoder, progress=progress, preset=args.preset,
            components={name: value for name in ("clip_l", "clip_g", "t5", "vae")
                        if (value := getattr(args, name)) is not None},
        )
    finally:
        bar.close()
    kind = "" if rec.kind == "checkpoint" else f"{rec.kind.replace('_', '-')}, "
    reads = f", reads image encoder {rec.image_encoder}" if rec.image_encoder else ""
    few = f", {rec.preset} defaults: {rec.default_steps} steps, CFG {rec.default_cfg:g}" if rec.preset else ""
    parts = rec.details.get("components") or {}
    beside = f", with {', '.join(sorted(parts))}" if parts else ""
    print(f"added {rec.id}: {kind}{rec.family} {rec.format}, {_human(rec.size_bytes)}, hash {rec.short_hash}{reads}"
          f"{beside}{few}")
    return 0


def cmd_models_remove(args: argparse.Namespace) -> int:
    rec = _store().remove(args.id)
    print(f"removed {rec.id}")
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    rec = _store().pull(args.repo_id, model_id=args.id, revision=args.revision)
    print(f"pulled {args.repo_id} as {rec.id}: {rec.family}, {_human(rec.size_bytes)}, hash {rec.short_hash}")
    return 0


def cmd_samplers(args: argparse.Namespace) -> int:
    from ..generation import SAMPLERS

    print(f"{'SOLVENT':<22} {'AUTOMATIC1111':<22} {'STABILITY':<22} DIFFUSERS")
    for s in SAMPLERS:
        opts = ", ".join(f"{k}={v}" for k, v in s.options.items())
        a1111 = s.a1111[0] if s.a1111 else ""
        print(f"{s.name:<22} {a1111:<22} {s.stability or '':<22} {s.scheduler}{f' ({opts})' if opts else ''}")
    return 0


# ---------------------------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="solvent", description="Self-hosted image generation that pays its own bills.")
    p.add_argument("--version", action="version", version="solvent 0.1.0")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    g = sub.add_parser("generate", help="make images from a prompt", description="Make images from a prompt.")
    g.add_argument("prompt", help="the prompt; (word:1.2) weights a word, BREAK starts a new chunk")
    g.add_argument("--model", help="model id (default: solvent-tiny); see `solvent models list`")
    g.add_argument("--negative", default="", help="negative prompt")
    g.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    g.add_argument("--cfg", type=float, help="classifier-free guidance scale (default: the model's)")
    g.add_argument("--sampler", help="sampler by any name (default: the model's); see `solvent samplers`")
    g.add_argument("--seed", type=int, help="seed 0..4294967295; image i uses seed+i (default: random)")
    g.add_argument("--size", type=_size, help="WIDTHxHEIGHT (default: the model's native size)")
    g.add_argument("--n", type=int, default=1, help="number of images (default 1)")
    g.add_argument("--init-image", help="image file for img2img")
    g.add_argument("--strength", type=float, default=0.75, help="img2img strength 0..1 (default 0.75)")
    g.add_argument("--mask", help="mask file for inpainting (white = repaint)")
    g.add_argument("--lora", type=_lora, action="append", help="NAME:WEIGHT, repeatable")
    g.add_argument("--shift", type=float, help="SD3 / Flux: the flow-matching timestep shift (default: the model's)")
    g.add_argument("--out", default="solvent.png", help="output file (.png, .webp, .jpg) or folder")
    g.add_argument("--json", action="store_true", help="also print a JSON summary")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_generate)

    m = sub.add_parser("models", help="list, add, show, remove or pull models", description="The model store.")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True
    ml = msub.add_parser("list", help="installed models")
    ml.add_argument("--json", action="store_true", help="print JSON")
    from ..engine.adapters import KINDS

    ml.add_argument("--kind", choices=(*KINDS, "all"), default="all",
                    help="only models of this kind (default: all: checkpoints, refiners, ControlNets, T2I-Adapters, "
                         "IP-Adapters and their image encoders, VAEs, embeddings, estimators, upscalers, segmenters)")
    ml.set_defaults(func=cmd_models_list)
    mv = msub.add_parser("default-vae", help="set the VAE a model's requests get (or `none` for its own)")
    mv.add_argument("id", help="the model")
    mv.add_argument("vae", help="a VAE in the store, or none")
    mv.set_defaults(func=cmd_models_default_vae)
    ms = msub.add_parser("show", help="one model's record")
    ms.add_argument("id")
    ms.set_defaults(func=cmd_models_show)
    ma = msub.add_parser("add", help="install a diffusers folder or a .safetensors file (offline): a checkpoint, an "
                                     "SDXL refiner, a ControlNet, a T2I-Adapter, an IP-Adapter or its CLIP image "
                                     "encoder, a VAE, an embedding, a depth estimator, an upscaler or a CLIPSeg "
                                     "segmenter, recognised from its tensors or config")
    ma.add_argument("path", help="diffusers folder or single-file checkpoint")
    ma.add_argument("--id", help="model id (default: from the file name)")
    ma.add_argument("--family", choices=["sd1", "sd2", "sdxl", "sd3", "flux"],
                    help="assert the family (it is detected anyway)")
    ma.add_argument("--prediction-type", choices=["epsilon", "v_prediction"], help="SD 2.x 768-v models use v_prediction")
    ma.add_argument("--link", action="store_true", help="reference the file in place instead of copying it")
    ma.add_argument("--unsafe-pickle", action="store_true",
                    help="allow .ckpt/.pt/.bin pickle files, which can run arbitrary code when loaded (adapters and "
                         "embeddings are read once with torch's safe loader and stored as .safetensors)")
    ma.add_argument("--image-encoder", metavar="ID",
                    help="IP-Adapters: the CLIP image encoder in the store it reads (default: the first that fits)")
    for flag, what in (("--clip-l", "CLIP-L text encoder (ComfyUI's models/clip/clip_l.safetensors)"),
                       ("--clip-g", "SD3: CLIP-G text encoder (clip_g.safetensors)"),
                       ("--t5", "T5-XXL text encoder (t5xxl_fp16 / t5xxl_fp8_e4m3fn .safetensors; optional for SD3)"),
                       ("--vae", "VAE (Flux: ae.safetensors)")):
        ma.add_argument(flag, metavar="FILE", dest=flag[2:].replace("-", "_"),
                        help=f"SD3 / Flux single files: the {what}, when the file does not carry it")
    ma.add_argument("--preset", choices=sorted(PRESETS),
                    help="defaults for requests that send none: few-step models (turbo, lcm, lightning, schnell, "
                         "sd3-turbo; recognised by name when left out) or standard")
    ma.add_argument("--license", help="licence name shown with the model's images")
    ma.add_argument("--license-url", help="licence URL")
    ma.add_argument("--quiet", action="store_true", help="no progress bar")
    ma.set_defaults(func=cmd_models_add)
    mr = msub.add_parser("remove", help="uninstall a model")
    mr.add_argument("id")
    mr.set_defaults(func=cmd_models_remove)
    mp = msub.add_parser("pull", help="download a diffusers repo from the Hugging Face hub (needs network)")
    mp.add_argument("repo_id", help="ORG/NAME")
    mp.add_argument("--id", help="model id (default: NAME)")
    mp.add_argument("--revision", help="branch, tag or commit")
    mp.set_defaults(func=cmd_models_pull)

    from . import billing, ledger, server

    server.add_parsers(sub)
    billing.add_parsers(sub)
    ledger.add_parsers(sub)

    s = sub.add_parser("samplers", help="the sampler table (Solvent, AUTOMATIC1111, Stability, diffusers names)")
    s.set_defaults(func=cmd_samplers)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = build_parser().parse_args(argv)
    if args.command in ("generate", "models"):  # (serve and worker quiet them where they build an engine)
        from ..engine.device import quiet_libraries

        quiet_libraries()
    try:
        return args.func(args)
    except SolventError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
