"""Workers: the loop that runs the engine on one device, and the two ways it reaches the queue.

`loop.WorkerLoop` runs jobs; `protocol.WorkerBackend` is what it needs from the queue; `local.LocalBackend`
(in-process, `solvent serve`) reaches the database directly and `remote.HttpBackend` (`solvent worker`) the
worker API over HTTP, importing no database code. This is the only package that joins `engine` to the
queue, storage, billing and the ledger.
"""

from .loop import WorkerLoop, declaration
from .protocol import Leased, WorkerBackend

__all__ = ["Leased", "WorkerBackend", "WorkerLoop", "declaration"]

