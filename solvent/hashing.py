"""The one hash for stored secrets (API keys, worker tokens, session tokens): sha256 of a 256-bit random value.

The secrets are random and long, so a fast hash is enough (there is nothing to brute-force) and lookups go
by hash, so no comparison leaks timing. Passwords are not secrets of this kind: they use argon2id
(`accounts.throttle`).
"""

from __future__ import annotations

import hashlib


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
