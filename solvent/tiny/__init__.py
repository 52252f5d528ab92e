"""`solvent-tiny`: the embedded model that ships inside the package (diffusers format, < 25 MB).

`arch` defines its components; `python -m solvent.tiny.build` writes weights (random, seeded) and
the manifest of their sha256.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path


def weights_dir() -> Path:
    return Path(str(resources.files("solvent.tiny") / "weights"))


@cache
def manifest() -> dict:
    path = weights_dir() / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}
