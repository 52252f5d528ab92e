"""Both ways a worker reaches the queue implement the whole `WorkerBackend` protocol, with its signatures."""

import inspect

from solvent.workers.local import LocalBackend
from solvent.workers.protocol import WorkerBackend
from solvent.workers.remote import HttpBackend

METHODS = [name for name, fn in vars(WorkerBackend).items() if inspect.isfunction(fn) and not name.startswith("_")]


def test_the_protocol_names_every_call_the_loop_makes():
    assert set(METHODS) == {"hello", "lease", "heartbeat", "input_image", "upload", "complete", "fail", "canceled",
                            "release"}
    assert all(inspect.getdoc(getattr(WorkerBackend, m)) for m in METHODS)


def test_local_and_remote_backends_match_the_protocol():
    for backend in (LocalBackend, HttpBackend):
        for name in METHODS:
            want = list(inspect.signature(getattr(WorkerBackend, name)).parameters)
            got = list(inspect.signature(getattr(backend, name)).parameters)
            assert got == want, f"{backend.__name__}.{name}{got} differs from the protocol's {want}"
