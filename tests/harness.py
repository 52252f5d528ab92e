"""The one way tests build the house: the composition root's `assemble` over a test database, with plans
seeded and images in the test's folder. Harness classes in the test files add scenario helpers on top
(orgs with credits, a worker thread, a live server) but never wire services themselves."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

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


# -- live processes (`solvent serve`, `solvent worker`) ---------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLVENT_")}
    env.update(SOLVENT_HOME=str(home), HF_HUB_OFFLINE="1", **extra)
    return env


def solvent(*args, env, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "solvent.cli.main", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


def wait_job(base: str, key: str, job_id: str, states=("succeeded", "failed", "canceled"), timeout=120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = httpx.get(f"{base}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()
        if job["state"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job did not reach {states}: {job}")


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.stdout.read() if proc.stdout else ""
