"""Engine speed: Solvent's `Engine.generate` vs a bare diffusers pipeline call, same process, same settings.

    python benchmarks/engine.py                               # solvent-tiny, 64×64, its defaults, CPU
    python benchmarks/engine.py --arch sd1 --size 512 --steps 30 --dtype fp16 [--compile]   # GPU, random SD1.5 weights

Prints seconds per image and steps per second for both (median of --runs after a warm-up) and the
ratio Solvent / bare. The bare call gets the same pipeline object, prompt, scheduler, seed and size,
so the ratio is Solvent's own overhead (validation, prompt weighting, metadata, usage).

    python benchmarks/engine.py --jobs 4                      # + K jobs one by one vs in one batched call
    python benchmarks/engine.py --arch flux-schnell --tiny    # SD3 / SD3.5 / Flux: a tiny model (tests' sizes)
    python benchmarks/engine.py --arch sd3.5 --size 1024 --steps 28 --device cuda --dtype bf16   # full size, random

With `--jobs K`, also times K different-prompt jobs run one after another (`Engine.generate` each, as a
worker with `--batch 1` does) against the same K in one device call (`Engine.generate_batch`, `--batch K`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from solvent.config import Settings  # noqa: E402
from solvent.engine.device import quiet_libraries, synchronize  # noqa: E402
from solvent.engine.schedulers import make_scheduler  # noqa: E402
from solvent.generation import GenerationRequest  # noqa: E402
from solvent.generation.samplers import resolve_sampler  # noqa: E402
from solvent.root import build_engine  # noqa: E402


def random_arch_model(arch: str, home: Path) -> str:
    """Save a randomly initialised full-size pipeline of `arch` as a diffusers folder; return its id."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from solvent.engine.checkpoint import tokenizer
    from solvent.engine.store import ModelStore
    from solvent.generation.families import shipped_config

    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_config(shipped_config(arch, "vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig(**shipped_config(arch, "text_encoder"))),
        tokenizer=tokenizer(arch != "sd1"),
        unet=UNet2DConditionModel.from_config(shipped_config(arch, "unet")),
        scheduler=EulerDiscreteScheduler.from_config(shipped_config(arch, "scheduler")),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(home / "src", safe_serialization=True)
    ModelStore(Settings(home=home)).add(home / "src", model_id=f"random-{arch}", link=True)
    return f"random-{arch}"


FLOW_ARCHES = ("sd3", "sd3.5", "flux-dev", "flux-schnell")


def random_flow_model(arch: str, home: Path, tiny: bool, dtype: torch.dtype) -> str:
    """A random-weight SD3 (medium), SD3.5 (medium: q/k norms, dual attention in its first 13 blocks) or Flux.1
    pipeline saved as a diffusers folder: the tests' tiny sizes, or the released sizes from the shipped configs."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from solvent.engine.store import ModelStore
    from solvent.generation.families import shipped_config
    from tests.flow_models import build_flux, build_sd3, save_folder

    family = "sd3" if arch.startswith("sd3") else "flux"
    if tiny:
        comps = build_sd3(v35=arch == "sd3.5") if family == "sd3" else build_flux(schnell=arch == "flux-schnell")
    else:
        from diffusers import AutoencoderKL, FluxTransformer2DModel, SD3Transformer2DModel
        from transformers import (
            CLIPTextConfig,
            CLIPTextModel,
            CLIPTextModelWithProjection,
            T5Config,
            T5EncoderModel,
        )

        from solvent.engine.checkpoint import tokenizer as clip_tokenizer
        from solvent.engine.flow import t5_tokenizer

        cfg = shipped_config(family, "transformer")
        if arch == "sd3.5":
            cfg.update(num_layers=24, dual_attention_layers=list(range(13)), qk_norm="rms_norm", pos_embed_max_size=384)
        if arch == "flux-schnell":
            cfg["guidance_embeds"] = False
        build = SD3Transformer2DModel if family == "sd3" else FluxTransformer2DModel
        comps = {"transformer": build.from_config(cfg).to(dtype),
                 "vae": AutoencoderKL.from_config(shipped_config(family, "vae")).to(dtype),
                 "scheduler": FlowMatchEulerDiscreteScheduler.from_config(shipped_config(family, "scheduler")),
                 "tokenizer": clip_tokenizer(False)}
        t5 = T5EncoderModel(T5Config(**shipped_config(family, "text_encoder_3" if family == "sd3" else "text_encoder_2")))
        if family == "sd3":
            comps.update(
                text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**shipped_config("sd3", "text_encoder"))).to(dtype),
                text_encoder_2=CLIPTextModelWithProjection(
                    CLIPTextConfig(**shipped_config("sd3", "text_encoder_2"))).to(dtype),
                tokenizer_2=clip_tokenizer(True), text_encoder_3=t5.to(dtype), tokenizer_3=t5_tokenizer())
        else:
            comps.update(text_encoder=CLIPTextModel(CLIPTextConfig(**shipped_config("flux", "text_encoder"))).to(dtype),
                         text_encoder_2=t5.to(dtype), tokenizer_2=t5_tokenizer())
    save_folder(family, comps, home / "src")
    ModelStore(Settings(home=home)).add(home / "src", model_id=f"random-{arch}", link=True)
    return f"random-{arch}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="solvent-tiny")
    p.add_argument("--arch", choices=["sd1", "sd2", *FLOW_ARCHES],
                   help="benchmark a random-weight full-size model of this family")
    p.add_argument("--tiny", action="store_true", help="with an SD3 / Flux --arch: the tests' tiny sizes")
    p.add_argument("--size", type=int, help="square size in pixels (default: the model's native)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--sampler")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet (CUDA)")
    p.add_argument("--prompt", default="a small red circle at the top left on a blue background")
    p.add_argument("--jobs", type=int, default=1, help="also compare K jobs one by one against one batched call")
    p.add_argument("--controlnet", action="store_true",
                   help="also run one ControlNet unit (a random one shaped for the model) against the bare "
                        "diffusers ControlNet pipeline")
    p.add_argument("--ip-adapter", action="store_true",
                   help="also run one IP-Adapter reference (random plain adapter and image encoder: tiny for "
                        "solvent-tiny, ViT-H-sized otherwise) against diffusers' own IP-Adapter loading")
    args = p.parse_args()
    quiet_libraries()
    torch.manual_seed(0)

    home = Path(tempfile.mkdtemp(prefix="solvent-bench-"))
    flow = args.arch in FLOW_ARCHES
    if flow:
        save_dtype = torch.float32 if args.tiny or args.dtype in ("auto", "fp32") else torch.bfloat16
        model = random_flow_model(args.arch, home, args.tiny, save_dtype)
    else:
        model = random_arch_model(args.arch, home) if args.arch else args.model
    engine = build_engine(Settings(home=home, device=args.device, dtype=args.dtype, compile=args.compile,
                                   model_cache_bytes=1 << 40))
    req = GenerationRequest(prompt=args.prompt, model=model, steps=args.steps, sampler=args.sampler, seed=1234,
                            batch_size=args.batch, width=args.size, height=args.size)
    resolved = engine.resolve(req)
    lm = engine.load(model)
    pipe = lm.pipe

    def solvent_call() -> None:
        engine.generate(req)

    def bare_call() -> None:
        pipe.scheduler = make_scheduler(resolve_sampler(resolved.sampler.name), lm.scheduler_config, resolved.seed)
        gens = [torch.Generator("cpu").manual_seed(resolved.seed + i) for i in range(args.batch)]
        extra = {}
        if flow and args.arch.startswith("flux"):
            extra["max_sequence_length"] = 512 if pipe.transformer.config.guidance_embeds else 256
        pipe(args.prompt, num_inference_steps=resolved.steps, guidance_scale=resolved.cfg_scale,
             width=resolved.width, height=resolved.height, num_images_per_prompt=args.batch, generator=gens, **extra)

    def timed(fn) -> float:
        synchronize(engine.device)
        t0 = time.perf_counter()
        fn()
        synchronize(engine.device)
        return time.perf_counter() - t0

    s, b = medians(timed, solvent_call, bare_call, args.runs)
    n = args.batch
    print(f"device {engine.device} {str(lm.dtype or engine.dtype).removeprefix('torch.')}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, compile {args.compile}")
    print(f"model {model}, {resolved.width}x{resolved.height}, {resolved.steps} steps, sampler {resolved.sampler.name}, "
          f"cfg {resolved.cfg_scale:g}, batch {n}, median of {args.runs}")
    print(f"{'':10} {'s/image':>10} {'steps/s':>10} {'s/request':>10}")
    print(f"{'bare':10} {b / n:10.4f} {resolved.steps / b:10.2f} {b:10.4f}")
    print(f"{'solvent':10} {s / n:10.4f} {resolved.steps / s:10.2f} {s:10.4f}")
    print(f"ratio solvent/bare: {s / b:.3f}  (overhead {100 * (s / b - 1):+.1f}%)")
    if args.controlnet:
        controlnet_run(engine, model, resolved, args, timed)
    if args.ip_adapter:
        ip_adapter_run(engine, model, resolved, args, timed)
    if args.jobs > 1:
        colours = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black"]
        jobs = [GenerationRequest(prompt=f"a {colours[i % len(colours)]} circle on a grey background", model=model,
                                  steps=args.steps, sampler=args.sampler, seed=1000 + i, batch_size=args.batch,
                                  width=args.size, height=args.size) for i in range(args.jobs)]

        def one_by_one() -> None:
            for j in jobs:
                engine.generate(j)

        def batched() -> None:
            engine.generate_batch(jobs)

        timed(batched)
        alone, together = [], []
        for _ in range(args.runs):
            alone.append(timed(one_by_one))
            together.append(timed(batched))
        a, t = statistics.median(alone), statistics.median(together)
        print(f"{args.jobs} jobs one by one: {a:.3f} s ({args.jobs / a:.2f} jobs/s); in one batched call: "
              f"{t:.3f} s ({args.jobs / t:.2f} jobs/s); speed-up {a / t:.2f}x")



def medians(timed, first, second, runs: int) -> tuple[float, float]:
    """Median seconds of two calls, each warmed up (and compiled) once, then interleaved so drift hits both."""
    for fn in (first, second):
        timed(fn)
    a, b = [], []
    for _ in range(runs):
        a.append(timed(first))
        b.append(timed(second))
    return statistics.median(a), statistics.median(b)


def controlnet_run(engine, model: str, resolved, args, timed) -> None:
    """Solvent with one ControlNet unit vs the bare diffusers ControlNet pipeline (same weights, seed, map)."""
    import diffusers
    from diffusers import ControlNetModel
    from PIL import Image, ImageDraw

    from solvent.generation.control import ControlUnit

    lm = engine.load(model)
    vae_factor = 2 ** (len(lm.pipe.vae.config.block_out_channels) - 1)
    channels = (16, 32, 96, 256)[: {8: 4, 4: 3, 2: 2}.get(vae_factor, 4)]
    net = ControlNetModel.from_unet(lm.pipe.unet, conditioning_embedding_out_channels=channels)
    folder = Path(tempfile.mkdtemp(prefix="solvent-bench-cn-"))
    net.save_pretrained(folder / "cn", safe_serialization=True)
    engine.store.add(folder / "cn", model_id="bench-controlnet")
    control = Image.new("RGB", (resolved.width, resolved.height), "black")
    ImageDraw.Draw(control).ellipse((resolved.width // 8, resolved.height // 8, resolved.width // 2,
                                     resolved.height // 2), fill="white")
    req = GenerationRequest(prompt=args.prompt, model=model, steps=args.steps, sampler=args.sampler, seed=1234,
                            width=args.size, height=args.size, controls=[ControlUnit("bench-controlnet", control)])
    xl = resolved.family.architecture == "sdxl"
    cls = getattr(diffusers, "StableDiffusionXLControlNetPipeline" if xl else "StableDiffusionControlNetPipeline")
    extra = {} if xl else {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    bare = cls.from_pipe(lm.pipe, controlnet=engine._controlnet(lm, engine.store.get("bench-controlnet")), **extra)
    bare.set_progress_bar_config(disable=True)

    against_bare("ControlNet, 1 unit", engine, lm, resolved, args, timed, req, bare, image=control)


def against_bare(label: str, engine, lm, resolved, args, timed, req, bare, **inputs) -> None:
    """Print the median seconds of `engine.generate(req)` and of the bare pipeline `bare` called with the same
    prompt, steps, CFG, size, scheduler and seed plus `inputs`, and their ratio."""
    def solvent_call() -> None:
        engine.generate(req)

    def bare_call() -> None:
        bare.scheduler = make_scheduler(resolve_sampler(resolved.sampler.name), lm.scheduler_config, resolved.seed)
        bare(args.prompt, num_inference_steps=resolved.steps, guidance_scale=resolved.cfg_scale,
             width=resolved.width, height=resolved.height, generator=[torch.Generator("cpu").manual_seed(1234)],
             **inputs)

    s, b = medians(timed, solvent_call, bare_call, args.runs)
    print(f"{label}: bare {b:.4f} s, solvent {s:.4f} s, ratio solvent/bare: {s / b:.3f}")


def ip_adapter_run(engine, model: str, resolved, args, timed) -> None:
    """Solvent with one IP-Adapter reference vs diffusers' `load_ip_adapter` on the same pipeline (same weights,
    encoder, reference, seed)."""
    from PIL import Image
    from safetensors.torch import save_file

    from solvent.generation.control import ImagePrompt
    from tests.adapter_files import ip_adapter_state, write_image_encoder

    lm = engine.load(model)
    folder = Path(tempfile.mkdtemp(prefix="solvent-bench-ip-"))
    tiny = resolved.family.name == "tiny"
    enc = dict(hidden=32, projection=16, image_size=32) if tiny else dict(
        hidden=1280, projection=1024, image_size=224, layers=32, patch=14, heads=16)
    write_image_encoder(folder / "image_encoder", **enc)
    save_file(ip_adapter_state(lm.pipe.unet, "plain", enc["projection"]), str(folder / "ip.safetensors"))
    engine.store.add(folder / "image_encoder", model_id="bench-encoder")
    engine.store.add(folder / "ip.safetensors", model_id="bench-ip-adapter")
    ref = Image.new("RGB", (256, 256), "orange")
    req = GenerationRequest(prompt=args.prompt, model=model, steps=args.steps, sampler=args.sampler, seed=1234,
                            width=args.size, height=args.size,
                            ip_adapters=[ImagePrompt("bench-ip-adapter", [ref], [1.0], weight=0.6)])
    bare = type(lm.pipe).from_pipe(lm.pipe)
    bare.set_progress_bar_config(disable=True)
    bare.image_encoder, bare.feature_extractor = engine._image_encoder(lm, engine.store.get("bench-encoder"))
    bare.load_ip_adapter(str(folder), subfolder="", weight_name="ip.safetensors", image_encoder_folder=None)
    bare.set_ip_adapter_scale(0.6)

    against_bare("IP-Adapter, 1 reference", engine, lm, resolved, args, timed, req, bare, ip_adapter_image=ref)


if __name__ == "__main__":
    main()
