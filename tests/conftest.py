"""Shared fixtures. Every test runs with the network blocked: only loopback connections are allowed."""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid

import pytest
from sqlalchemy import create_engine, text

from solvent.storage import Database, Organisation

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ["HF_HUB_OFFLINE"] = "1"

_real_connect = socket.socket.connect
_real_getaddrinfo = socket.getaddrinfo


class NetworkBlocked(ConnectionError):
    """Raised when code under test tries to reach anything but this machine."""


def _is_local(host) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
        raise NetworkBlocked(f"test tried to connect to {address!r}")
    return _real_connect(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local(host):
        raise NetworkBlocked(f"test tried to resolve {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def no_network():
    socket.socket.connect = _guarded_connect
    socket.getaddrinfo = _guarded_getaddrinfo
    yield
    socket.socket.connect = _real_connect
    socket.getaddrinfo = _real_getaddrinfo


@pytest.fixture(autouse=True, scope="session")
def quiet():
    from solvent.engine.device import quiet_libraries

    quiet_libraries()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh SOLVENT_HOME and settings that read it."""
    from solvent.config import get_settings

    monkeypatch.setenv("SOLVENT_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


@pytest.fixture
def settings(home):
    from solvent.config import get_settings

    return get_settings()


@pytest.fixture
def engine(settings):
    from solvent.root import build_engine

    return build_engine(settings)


# Which tests `scripts/test --fast` leaves out (by file, so a new test in one of them is marked too).
SLOW_FILES = {"test_train.py", "test_model.py", "test_controlnet_model.py", "test_fuzz.py", "test_faults.py",
              "test_serve.py"}
BROWSER_FILES = {"test_studio.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.path.name
        if name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
        if name in BROWSER_FILES:
            item.add_marker(pytest.mark.browser)


# ---- real databases ----------------------------------------------------------------------
# Real databases: a fresh SQLite file and a fresh PostgreSQL database per test.
#
# The PostgreSQL half needs a server at `SOLVENT_TEST_PG` (default: postgres@127.0.0.1:5432, trust auth; see
# CONTRIBUTING.md); when none answers, those tests skip and say so. `scripts/test --fast` leaves them out.




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




@pytest.fixture
def services(db, tmp_path):
    """The house as `solvent serve` assembles it (`solvent.root.assemble`) over the test's database."""
    from tests.harness import make_services

    return make_services(db, tmp_path)
