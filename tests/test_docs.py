"""Everything a user can set, type or call is documented (datasette's habit): each setting in
docs/settings.md, each CLI command in docs/cli.md, each route in docs/api.md. A new one fails here until
it is written down."""

from __future__ import annotations

import argparse
from pathlib import Path

from solvent.cli.main import build_parser
from solvent.config import Settings
from solvent.root import assemble, build_app
from solvent.storage import Database

ROOT = Path(__file__).resolve().parents[1]


def _commands(parser: argparse.ArgumentParser, prefix: str = "solvent") -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += [f"{prefix} {name}", *_commands(sub, f"{prefix} {name}")]
    return out


def test_every_setting_is_documented():
    text = (ROOT / "docs" / "settings.md").read_text()
    missing = [f"SOLVENT_{name.upper()}" for name in Settings.model_fields
               if f"`SOLVENT_{name.upper()}`" not in text]
    assert missing == []


def test_every_command_is_documented():
    text = (ROOT / "docs" / "cli.md").read_text()
    commands = _commands(build_parser())
    assert len(commands) > 40  # the walk reaches the subcommands
    assert [c for c in commands if f"`{c}`" not in text] == []


def test_every_route_is_documented(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'docs.db'}")
    db.create_all()
    app = build_app(assemble(Settings(home=tmp_path), db))
    routes = [f"{method.upper()} {path}" for path, ops in app.openapi()["paths"].items() for method in ops]
    text = (ROOT / "docs" / "api.md").read_text()
    assert len(routes) > 80
    assert [r for r in routes if f"`{r}`" not in text] == []


def test_the_readme_links_only_to_files_that_exist():
    import re

    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?!https?:|#)[^)#]+)", readme)
    assert links and [x for x in links if not (ROOT / x).exists()] == []
    assert len(readme.splitlines()) <= 180
