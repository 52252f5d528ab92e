"""Real databases: a fresh SQLite file and a fresh PostgreSQL database per test.

The PostgreSQL half needs a server at `SOLVENT_TEST_PG` (default: postgres@127.0.0.1:5432, trust auth; see
CONTRIBUTING.md); when none answers, those tests skip and say so. `scripts/test --fast` leaves them out.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import pytest
from sqlalchemy import create_engine, text

from solvent.storage import Database, Organisation

PG_ADMIN = os.environ.get("SOLVENT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


_PG_REACHABLE: list[str | None] = []  # [] unknown, [None] reachable, [reason] not


def _pg_unreachable() -> str | None:
    if not _PG_REACHABLE:
        try:
            probe = create_engine(PG_ADMIN, connect_args={"connect_timeout": 3})
            with probe.connect():
                pass
            probe.dispose()
            _PG_REACHABLE.append(None)
        except Exception as e:  # noqa: BLE001 - any failure to connect is the reason given in the skip
            _PG_REACHABLE.append(f"PostgreSQL is not reachable at SOLVENT_TEST_PG={PG_ADMIN} "
                                 f"({type(e).__name__}); start it or point SOLVENT_TEST_PG at one")
    return _PG_REACHABLE[0]


def _pg_database():
    name = f"solvent_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name

    def drop():
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db(request, tmp_path):
    if request.param == "postgresql" and (reason := _pg_unreachable()):
        pytest.skip(reason)
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'solvent.db'}")
        drop = None
    else:
        url, drop = _pg_database()
        database = Database(url)
    database.create_all()
    yield database
    database.dispose()
    if drop:
        drop()


@pytest.fixture
def orgs(db):
    with db.session() as s:
        a, b = Organisation(name="A"), Organisation(name="B")
        s.add_all([a, b])
    return a.id, b.id


class ThreadServer:
    """An ASGI app served by uvicorn on a free loopback port in a daemon thread (real HTTP, one process)."""

    def __init__(self, app):
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
