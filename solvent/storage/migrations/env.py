"""Alembic environment: runs migrations on the engine Solvent hands it (no ini file)."""

from alembic import context

from solvent.storage.models import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
