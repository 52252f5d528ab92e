"""The studio's files: vendored libraries match their recorded checksums; the page references only local files."""

from __future__ import annotations

import hashlib
import json
import re

from solvent.studio import STATIC


def test_vendored_files_match_their_manifest():
    manifest = json.loads((STATIC / "vendor" / "VENDOR.json").read_text())
    for lib in manifest.values():
        for name, meta in lib["files"].items():
            digest = hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest()
            assert digest == meta["sha256"], f"{name} differs from {lib['source']} ({meta['from']})"


def test_the_page_and_its_modules_load_nothing_from_elsewhere():
    for path in [STATIC / "index.html", *STATIC.glob("*.js"), STATIC / "studio.css"]:
        text = path.read_text()
        assert not re.search(r"(?:src|href)=\"(?:https?:)?//", text), path.name
        assert not re.search(r"\bimport\b[^;]*from\s+\"(?:https?:)?//", text), path.name
        assert "url(http" not in text, path.name


def test_every_module_import_exists():
    for path in STATIC.glob("*.js"):
        for ref in re.findall(r'from "\./([^"]+)"', path.read_text()):
            assert (STATIC / ref).is_file(), f"{path.name} imports missing {ref}"
