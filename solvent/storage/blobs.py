"""The image store: content-addressed blobs behind an interface an S3-compatible store can implement."""

from __future__ import annotations

import hashlib
import os
import uuid
from abc import ABC, abstractmethod
from pathlib import Path

from ..errors import NotFound


class ImageStore(ABC):
    """Blobs addressed by the sha256 of their bytes: writing the same image twice stores it once."""

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store `data`; return its key (idempotent)."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under `key`; `NotFound` if absent."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether `key` is stored."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key` (no error if absent)."""


class LocalImageStore(ImageStore):
    """Files under `root/ab/cd/<sha256>`, written to a temporary name and renamed (never half-written)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise NotFound(f"`image` key {key!r} is not a stored image.", field="image", value=key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        path = self._path(key)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{key}.{uuid.uuid4().hex}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return key

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"`image` {key!r} is not in the store.", field="image", value=key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
