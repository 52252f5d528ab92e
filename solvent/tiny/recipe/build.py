"""Write untrained `solvent-tiny` weights: `python -m solvent.tiny.recipe.build [--seed N] [--out DIR]`.

`python -m solvent.tiny.recipe.train` writes the trained weights that ship; this is its starting point.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import weights_dir
from .arch import build_pipeline, save_pipeline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    parser.add_argument("--out", type=Path, default=weights_dir(), help="output folder (default: the package's)")
    args = parser.parse_args(argv)
    manifest = save_pipeline(build_pipeline(args.seed), args.out, {"trained": False, "seed": args.seed})
    total = sum(f["size"] for f in manifest["files"])
    print(f"wrote {args.out} ({total / 1e6:.1f} MB, sha256 {manifest['sha256'][:12]})")


if __name__ == "__main__":
    main()
