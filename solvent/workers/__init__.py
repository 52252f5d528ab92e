"""Workers: the loop that runs the engine on one device, in-process or on another machine over HTTP.

This is the only package that joins `engine` to the queue, storage and (later) billing.
"""

from .backends import HttpBackend, LocalBackend
from .loop import WorkerLoop, declaration

__all__ = ["HttpBackend", "LocalBackend", "WorkerLoop", "declaration"]
