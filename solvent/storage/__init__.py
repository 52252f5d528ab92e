"""SQLAlchemy models, sessions, Alembic migrations and the image store (the service issue).

Not built yet: this package marks its place in the layout of DESIGN.md.
"""
