"""The database: one engine per process, SQLite (WAL, busy timeout, foreign keys) or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..errors import ValidationFailed


def utcnow() -> datetime:
    return datetime.now(UTC)


def keep(s: Session, obj):
    """Hold `obj` for the rest of the session's transaction. The identity map references objects weakly,
    so without this a later `s.get()` of the same row by another hook issues its SELECT again."""
    s.info.setdefault("kept", []).append(obj)
    return obj


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _sqlite_begin(conn) -> None:
    # Take the write lock at BEGIN, so read-then-write transactions never deadlock on upgrade.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """Owns the SQLAlchemy engine and hands out sessions (one transaction each)."""

    def __init__(self, url: str, echo: bool = False):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None}
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        with self._sessions() as s, s.begin():
            yield s

    def create_all(self) -> None:
        """Bring the schema to the newest migration."""
        from .migrate import upgrade

        upgrade(self)

    def dispose(self) -> None:
        self.engine.dispose()


def newest_first(s, query, row, org_id: str, cursor: str | None, what: str):
    """`query` ordered newest first (`created_at`, then `id`), after the `cursor` row of this organisation."""
    if cursor:
        anchor = s.scalar(select(row).where(row.id == cursor, row.org_id == org_id))
        if anchor is None:
            raise ValidationFailed(f"`cursor` {cursor!r} is not {'an' if what[0] in 'aeiou' else 'a'} {what} of "
                                   "yours.", field="cursor", value=cursor)
        query = query.where((row.created_at < anchor.created_at) |
                            ((row.created_at == anchor.created_at) & (row.id < anchor.id)))
    return query.order_by(row.created_at.desc(), row.id.desc())
