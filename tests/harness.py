"""The one way tests build the house: the composition root's `assemble` over a test database, with plans
seeded and images in the test's folder. Harness classes in the test files add scenario helpers on top
(orgs with credits, a worker thread, a live server) but never wire services themselves."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from solvent.billing import ensure_plans
from solvent.config import Settings
from solvent.jobs import QueueLimits
from solvent.root import assemble
from solvent.services import Services
from solvent.storage import Database, LocalImageStore


def make_services(db: Database, tmp: Path, *, limits: QueueLimits | None = None, pricing=None,
                  **settings) -> Services:
    """Services over `db` as `solvent serve` assembles them; `settings` override `Settings` fields."""
    ensure_plans(db)
    settings.setdefault("home", tmp / "home")
    return assemble(Settings(**settings), db, limits, pricing, images=LocalImageStore(tmp / "images"))


def sqlite_services(tmp: Path, **kw) -> Services:
    """A fresh SQLite database in `tmp`, migrated, with services over it (for live servers in a thread)."""
    db = Database(f"sqlite:///{tmp / 'solvent.db'}")
    db.create_all()
    return make_services(db, tmp, **kw)


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
