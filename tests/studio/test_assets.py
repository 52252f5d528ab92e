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


def _modules():
    return [p for p in STATIC.rglob("*.js") if "vendor" not in p.parts]


def _imports(path):
    return [(path.parent / ref).resolve() for ref in re.findall(r'from "(\.{1,2}/[^"]+)"', path.read_text())]


def test_the_page_and_its_modules_load_nothing_from_elsewhere():
    for path in [STATIC / "index.html", *_modules(), STATIC / "studio.css"]:
        text = path.read_text()
        assert not re.search(r"(?:src|href)=\"(?:https?:)?//", text), path.name
        assert not re.search(r"\bimport\b[^;]*from\s+\"(?:https?:)?//", text), path.name
        assert "url(http" not in text, path.name


def test_every_module_import_exists():
    for path in _modules():
        for ref in _imports(path):
            assert ref.is_file(), f"{path.name} imports missing {ref}"


def test_the_modules_import_each_other_without_a_circle():
    """app.js is the router: nothing imports it, and no module reaches itself through its imports."""
    graph = {p.resolve(): _imports(p) for p in _modules()}
    assert (STATIC / "app.js").resolve() not in {r for refs in graph.values() for r in refs}
    done: set = set()

    def visit(node, path):
        assert node not in path, " → ".join(p.name for p in [*path, node])
        if node in done:
            return
        for nxt in graph.get(node, []):
            visit(nxt, [*path, node])
        done.add(node)

    for node in graph:
        visit(node, [])


def test_no_module_is_a_kitchen_sink():
    # The studio's rooms stay small: the longest module is the dashboard page (~150 lines).
    for path in _modules():
        assert len(path.read_text().splitlines()) <= 200, f"{path.name} is {len(path.read_text().splitlines())} lines"
