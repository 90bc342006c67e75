"""Alembic's environment for oaiproxy's store: run on the connection :func:`oaiproxy.store.database.migrate`
hands over (``config.attributes["connection"]``), never on a URL of its own, so the proxy, the tests and
``alembic`` commands all migrate through the same engine set-up (SQLite pragmas included)."""

from __future__ import annotations

from alembic import context

from oaiproxy.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("oaiproxy's migrations run through oaiproxy.store.database.migrate(), which passes the "
                       "connection; there is no URL in an alembic.ini to use")
# render_as_batch: SQLite cannot ALTER most things; batch mode copies the table, on SQLite only
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
