"""Shared fixtures. Every test runs with the network blocked: only loopback connections are allowed."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

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
SLOW_FILES = {"test_train.py", "test_model.py", "test_fuzz.py", "test_faults.py", "test_live.py"}
BROWSER_FILES = {"test_studio.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.path.name
        if name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
        if name in BROWSER_FILES:
            item.add_marker(pytest.mark.browser)
