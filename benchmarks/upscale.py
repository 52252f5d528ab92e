"""Upscale ×4 speed: seconds per output megapixel, tiled (Solvent's default tiles) vs in one piece, same process.

    python benchmarks/upscale.py                      # solvent-tiny-upscale, a tiny and a full-size ESRGAN, CPU
    python benchmarks/upscale.py --device cuda --dtype fp16

The full-size model is ESRGAN's published shape (64 filters, 23 RRDB blocks: 4x-UltraSharp, RealESRGAN_x4plus);
random weights run at the same speed as trained ones. Prints the median of --runs after a warm-up and the ratio
tiled / whole (tiling bounds memory on large images; its cost is the overlap computed twice).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from solvent.engine.device import synchronize  # noqa: E402
from solvent.engine.upscale import OVERLAP, describe, spandrel, upscale_tensor  # noqa: E402


def shipped():
    """solvent-tiny-upscale as the package ships it (None when its weights are not in this install)."""
    from solvent.engine.upscale import load_upscaler
    from solvent.tiny import upscaler_dir

    path = upscaler_dir() / "model.safetensors"
    return load_upscaler(path) if path.is_file() else None


def model(full: bool):
    spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    net = ESRGAN(num_filters=64, num_blocks=23, scale=4) if full else ESRGAN(num_filters=8, num_blocks=1, scale=4)
    return describe(net.state_dict()).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--tiny-size", type=int, default=512, help="input side for the tiny model")
    p.add_argument("--full-size", type=int, default=192, help="input side for the full-size model")
    p.add_argument("--tile", type=int, default=128, help="tile side (input pixels) for the tiled runs")
    args = p.parse_args()
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    device = torch.device(args.device)
    print(f"device {device} {args.dtype}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"tile {args.tile} + overlap {OVERLAP}, median of {args.runs}")
    runs = [("solvent-tiny-upscale", shipped(), args.tiny_size), ("tiny ESRGAN", model(False), args.tiny_size),
            ("ESRGAN 64×23", model(True), args.full_size)]
    for name, m, side in runs:
        if m is None:
            print(f"{name}: not in this install, skipped")
            continue
        m = m.to(device, dtype)
        x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(1)).to(device, dtype)
        mp = (side * 4) ** 2 / 1e6

        def run(tile: int, m=m, x=x) -> float:
            synchronize(device)
            t0 = time.perf_counter()
            with torch.inference_mode():
                upscale_tensor(m, x, tile=tile)
            synchronize(device)
            return time.perf_counter() - t0

        whole_t, tiled_t = [], []
        run(side + 1), run(args.tile)
        for _ in range(args.runs):
            whole_t.append(run(side + 1))
            tiled_t.append(run(args.tile))
        w, t = statistics.median(whole_t), statistics.median(tiled_t)
        print(f"{name:20} {side}² → {side * 4}² ({mp:.2f} MP): whole {w / mp:.3f} s/MP, tiled {t / mp:.3f} s/MP, "
              f"ratio tiled/whole {t / w:.3f}")


if __name__ == "__main__":
    main()
