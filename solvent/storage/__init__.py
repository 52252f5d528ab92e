"""Storage: SQLAlchemy models, the database (SQLite in WAL mode or PostgreSQL), migrations, the image store."""

from .blobs import ImageStore, LocalImageStore
from .db import Database, utcnow
from .models import ApiKey, Base, Image, Job, JobState, Organisation, Worker

__all__ = [
    "ApiKey",
    "Base",
    "Database",
    "Image",
    "ImageStore",
    "Job",
    "JobState",
    "LocalImageStore",
    "Organisation",
    "Worker",
    "utcnow",
]
