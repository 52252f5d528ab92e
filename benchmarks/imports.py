"""The import graph of `solvent`, by room (package), checked against DESIGN.md's "may import" table.

Every `import` counts, the ones inside functions too (a lazy import is still a dependency). Prints the
rooms' edges, the back-arrows (edges the table does not allow) and the circles (rooms that reach each
other). `tests/test_architecture.py` asserts both lists are empty.

    python benchmarks/imports.py [PATH/TO/solvent]
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "solvent"
FLOOR = {"errors", "config", "money", "hashing", "__init__"}  # every room may import these

# DESIGN.md's table: room → the rooms it may import (besides the floor). `root` is the composition root.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": set(),
    "__init__": set(),
    "money": set(),
    "outbound": set(),
    "generation": set(),
    "storage": {"generation"},
    "engine": {"generation"},
    "tiny": {"engine", "generation"},
    "tiny.recipe": {"tiny", "engine", "generation", "root"},  # research scripts, run as `python -m`
    "accounts": {"storage", "outbound", "money"},
    "jobs": {"storage", "generation", "outbound"},  # job webhooks follow the outbound-URL rules
    "billing": {"storage", "accounts", "jobs", "generation", "money"},
    "ledger": {"storage", "billing", "jobs", "generation", "money", "outbound", "accounts"},
    "workers": {"engine", "generation", "jobs", "storage", "billing", "ledger"},
    "services": {"accounts", "billing", "jobs", "ledger", "storage"},
    "api": {"services", "generation", "accounts", "billing", "jobs", "ledger", "storage", "money", "outbound"},
    "studio": set(),
    "root": {"services", "accounts", "billing", "jobs", "ledger", "storage", "engine", "tiny", "workers", "api",
             "studio", "generation"},
    "cli": {"*"},
}


def room_of(module: str) -> str:
    """`solvent.api.routes.jobs` → `api`; `solvent.tiny.recipe.train` → `tiny.recipe`; `solvent` → `__init__`."""
    parts = module.split(".")[1:]
    if not parts or not ((ROOT / parts[0]).is_dir() or (ROOT / f"{parts[0]}.py").is_file()):
        return "__init__"  # the package itself, or a name it defines (`from solvent import __version__`)
    if parts[0] == "tiny" and len(parts) > 1 and parts[1] == "recipe":
        return "tiny.recipe"
    return parts[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_edges() -> list[tuple[str, str, str]]:
    """(importing module, imported module, "file:line") for every import of a `solvent` module."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
            for t in targets:
                if t == "solvent" or t.startswith("solvent."):
                    out.append((name, t, f"{path.relative_to(ROOT.parent)}:{node.lineno}"))
    return out


def room_edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for src, dst, where in module_edges():
        a, b = room_of(src), room_of(dst)
        if a != b:
            edges[(a, b)].append(where)
    return edges


def back_arrows() -> list[str]:
    """Edges DESIGN's table does not allow, with where each is written."""
    out = []
    for (a, b), where in sorted(room_edges().items()):
        allowed = ALLOWED.get(a)
        if allowed is None:
            out.append(f"{a} is not a room of DESIGN.md's table ({where[0]})")
        elif "*" not in allowed and b not in allowed | FLOOR:
            out.append(f"{a} → {b}: {', '.join(where)}")
    return out


def circles() -> list[list[str]]:
    """Strongly connected groups of more than one room (Tarjan)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in room_edges():
        graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    global ROOT
    if len(sys.argv) > 1:  # another checkout's package (e.g. an older commit's, to compare)
        ROOT = Path(sys.argv[1]).resolve()
    edges = room_edges()
    print(f"{len(module_edges())} imports between modules, {len(edges)} edges between rooms")
    for (a, b), where in sorted(edges.items()):
        print(f"  {a:>12} → {b:<12} ({len(where)})")
    arrows, rings = back_arrows(), circles()
    print(f"back-arrows: {len(arrows)}")
    for line in arrows:
        print(f"  {line}")
    print(f"circles: {len(rings)}")
    for ring in rings:
        print(f"  {' ⇄ '.join(ring)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
