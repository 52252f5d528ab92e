"""The HTTP API: native routes under /api, the worker API, health and metrics."""

from .app import create_app

__all__ = ["create_app"]
