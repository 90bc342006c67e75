"""The database behind the store: one async SQLAlchemy engine, migrated to the newest schema when it opens.

SQLite (the default, a file in ``--data-dir``) and PostgreSQL (``--db-url postgresql+asyncpg://...``, so
several proxies share their state) run the same code; what differs is set up here and nowhere else:

* SQLite runs in WAL mode (readers never wait for the one writer), with foreign keys on and a busy
  timeout, and SQLAlchemy, not the sqlite3 module, begins transactions, so a transaction is one: a write
  begins ``IMMEDIATE`` (it takes the write lock first, instead of failing half-way when another process
  wrote since it read), and the DDL of a migration is inside its transaction.
* Migrations (Alembic, ``alembic/versions``) run at start-up inside one transaction that first takes the
  database's write lock (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock), so proxies started
  together on one database migrate it once, and a failed migration leaves it as it was.

A database failure while serving is a :class:`StoreUnavailable`: a 503 in the API's error shape, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from oaiproxy import metrics
from oaiproxy.errors import APIError
from oaiproxy.settings import ConfigError, Settings

log = logging.getLogger("oaiproxy.store")

MIGRATIONS = Path(__file__).with_name("alembic")
#: PostgreSQL advisory lock key held while migrating (any constant shared by every oaiproxy)
_MIGRATION_LOCK = 0x6F616970  # "oaip"
#: how long a SQLite writer waits for another one before giving up (ms)
_BUSY_TIMEOUT_MS = 10_000


class StoreUnavailable(APIError):
    """The database failed or cannot be reached; the client may retry."""

    status = 503
    type = "server_error"


def database_url(settings: Settings) -> str:
    """``--db-url``, else the SQLite file ``oaiproxy.db`` in ``--data-dir``."""
    if settings.db_url:
        return settings.db_url
    return f"sqlite+aiosqlite:///{(settings.data_dir.expanduser() / 'oaiproxy.db').resolve()}"


def shown(url: str) -> str:
    """The URL for messages and logs, without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def _sqlite_setup(engine: AsyncEngine) -> None:
    """WAL, foreign keys, busy timeout, and SQLAlchemy's own BEGIN (see the module's docstring)."""

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the sqlite3 module begins nothing itself
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


def _alembic_config(scripts: Path, connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(scripts))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision(scripts: Path = MIGRATIONS) -> str | None:
    """The newest migration's revision."""
    return ScriptDirectory.from_config(_alembic_config(scripts)).get_current_head()


def _upgrade(connection: Connection, target: str, scripts: Path) -> None:
    before = MigrationContext.configure(connection).get_current_revision()
    command.upgrade(_alembic_config(scripts, connection), target)
    after = MigrationContext.configure(connection).get_current_revision()
    if before != after:
        log.info("store: database migrated from %s to %s", before or "empty", after)


async def migrate(engine: AsyncEngine, target: str = "head", scripts: Path = MIGRATIONS) -> None:
    """Bring the database to ``target`` in one transaction that holds the write lock throughout
    (``scripts``: the migrations folder, oaiproxy's own unless a test brings one)."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(write=True)
        async with conn.begin():
            if engine.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            await conn.run_sync(_upgrade, target, scripts)


async def _first_contact(engine: AsyncEngine, migrate_to: str | None) -> None:
    """Migrate to ``migrate_to`` (``None``: only connect), waiting out SQLite's lock at a new file.

    Connections that open a new SQLite file together race to switch it to WAL, and the losers get
    "database is locked" at once, whatever the busy timeout (SQLite does not wait on a journal-mode
    change); each migration is one transaction, so trying again, for as long as a writer would wait,
    is safe.
    """
    deadline = asyncio.get_running_loop().time() + _BUSY_TIMEOUT_MS / 1000
    pause = 0.01
    while True:
        try:
            if migrate_to is not None:
                await migrate(engine, migrate_to)
            else:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return
        except OperationalError as exc:
            locked = engine.dialect.name == "sqlite" and "database is locked" in str(exc.orig)
            if not locked or asyncio.get_running_loop().time() + pause > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


class Database:
    """An open, migrated database: sessions for the stores built on it (:mod:`oaiproxy.store.responses`)."""

    def __init__(self, engine: AsyncEngine, url: str):
        self.engine = engine
        self.url = url
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def open(cls, url: str, *, migrate_to: str | None = "head") -> Database:
        """Connect to ``url``, creating a SQLite file's folder, and migrate (``migrate_to=None``: don't).

        Anything that stops it is a :class:`ConfigError` naming ``--db-url``: the proxy does not start
        without the database it was told to keep its state in.
        """
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigError(f"--db-url: not a database URL: {exc}") from None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            folder = Path(parsed.database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"--db-url: cannot create the folder {folder} of {shown(url)} "
                                  f"(--data-dir): {exc.strerror or exc}") from None
        try:
            engine = create_async_engine(url, pool_pre_ping=True)
        except (ArgumentError, ImportError, SQLAlchemyError) as exc:
            hint = " (PostgreSQL needs the asyncpg package: pip install asyncpg)" if "asyncpg" in str(exc) else ""
            raise ConfigError(f"--db-url: cannot use {shown(url)}: {exc}{hint}") from None
        if engine.dialect.name == "sqlite":
            _sqlite_setup(engine)
        try:
            await _first_contact(engine, migrate_to)
        except (SQLAlchemyError, OSError) as exc:
            await engine.dispose()
            raise ConfigError(f"--db-url: cannot open the database {shown(url)}: {exc}") from None
        except CommandError as exc:  # a revision this oaiproxy does not know: a newer one migrated it
            await engine.dispose()
            raise ConfigError(f"--db-url: the database {shown(url)} has a schema this oaiproxy does not know "
                              f"({exc}; its newest is {head_revision()}): it was migrated by a newer oaiproxy, "
                              "so run that one, or another database") from None
        log.info("store: %s (%s)", shown(url), engine.dialect.name)
        return cls(engine, url)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def session(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        """One transaction, committed when the block ends; any database failure is a :class:`StoreUnavailable`.

        ``write``: it will write (on SQLite it takes the write lock when it begins)."""
        try:
            async with self._sessions() as session, session.begin():
                if write:  # the connection's options, set before its BEGIN
                    await session.connection(execution_options={"write": True})
                yield session
        except (SQLAlchemyError, OSError) as exc:
            log.warning("store: %s failed: %s", shown(self.url), exc)
            metrics.note_store_error(self.engine.dialect.name)
            raise StoreUnavailable(f"the response store's database is unavailable ({type(exc).__name__}); "
                                   "try again later", code="store_unavailable",
                                   headers={"Retry-After": "2"}) from None


__all__ = ["Database", "MIGRATIONS", "StoreUnavailable", "database_url", "head_revision", "migrate", "shown"]
