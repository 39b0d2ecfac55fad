"""Alembic environment: uses the connection idsvc hands over, else IDSVC_DB / sqlalchemy.url."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from idsvc.storage.schema import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = os.environ.get("IDSVC_DB") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set IDSVC_DB or sqlalchemy.url in alembic.ini")
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_offline() -> None:
    url = os.environ.get("IDSVC_DB") or config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
