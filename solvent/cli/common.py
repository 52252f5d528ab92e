"""What every command module shares: the services built by the composition root, and time arguments."""

from __future__ import annotations

from datetime import UTC, datetime


def open_services():
    """The database-side services (migrated), as `solvent serve` builds them."""
    from ..config import get_settings
    from ..root import build_services

    return build_services(get_settings())


def parse_when(text: str | None) -> datetime | None:
    """An ISO time from the command line; a time without a zone is UTC."""
    if text is None:
        return None
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)
