"""Alembic's entry point for the `alembic` command (authors writing a revision). The service itself runs the same
revisions through cds_service/schema.py, never through this file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from cds_service.settings import Settings
from cds_service.store import metadata

connectable = create_engine(Settings().database_url)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
