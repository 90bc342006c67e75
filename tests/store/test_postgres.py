"""The store on a real PostgreSQL server (asyncpg), as ``--db-url postgresql+asyncpg://...`` runs it: the migrations
make the schema the models describe, responses and chains round-trip, a schema change keeps the data, two stores
(two proxies) on one database see each other's writes, four proxies opening a fresh database migrate it once,
and a server that goes away is a 503 ``store_unavailable`` (in the store and through the API) until it is back.

Each test gets a new database on the session's server (tests/conftest.py ``postgres_server``); the test that
stops the server has one of its own.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from openai import AsyncOpenAI
from sqlalchemy import text

from oaiproxy.api.app import ProxyState, create_app
from oaiproxy.runtime.upstream import Admission, LlamaServerClient
from oaiproxy.settings import ConfigError, Settings
from oaiproxy.store import Database, Store, StoreUnavailable
from oaiproxy.store.database import MIGRATIONS, head_revision, migrate
from oaiproxy.store.schema import Base
from tests.api.messages.conftest import Script, stand_in
from tests.stand_in_app import hermes_engine
from tests.store.postgres import PostgresServer, running_postgres
from tests.store.test_store import NEXT_REVISION, REPO, record


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A new, empty database on the session's server."""
    return postgres_server.create_database()


async def scalar(url: str, sql: str) -> Any:
    db = await Database.open(url, migrate_to=None)
    try:
        async with db.engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar()
    finally:
        await db.close()


async def test_a_new_database_is_migrated_to_the_schema_the_models_describe(pg_url: str) -> None:
    db = await Database.open(pg_url)
    assert db.engine.dialect.name == "postgresql" and db.engine.dialect.driver == "asyncpg"
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(lambda sync: compare_metadata(
            MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata))
        names = set((await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")))
                    .scalars())
        json_type = (await conn.execute(text("SELECT data_type FROM information_schema.columns "
                                             "WHERE table_name = 'responses' AND column_name = 'output_items'"))
                     ).scalar()
    await db.close()
    assert diff == []
    assert {"threads", "messages", "responses", "conversation_items", "alembic_version"} <= names
    assert json_type == "jsonb"
    assert await scalar(pg_url, "SELECT version_num FROM alembic_version") == head_revision()


async def test_responses_round_trip_and_a_chain_is_walked_oldest_first(pg_url: str) -> None:
    from datetime import UTC, datetime

    store = await Store.open(pg_url)
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    await store.responses.save(record("r1", created_at=created, user="ana"))
    await store.responses.save(record("r2", "r1"))
    await store.responses.save(record("r3", "r2"))
    await store.close()

    store = await Store.open(pg_url)
    got = await store.responses.get("r1")
    assert got == record("r1", created_at=created, user="ana")
    assert got.created_at.tzinfo is not None and got.created_at == created
    assert [r.id for r in (await store.responses.chain("r3")).records] == ["r1", "r2", "r3"]
    assert [r.id for r in (await store.responses.chain("r3", limit=2)).records] == ["r2", "r3"]
    assert await store.responses.get("nope") is None and (await store.responses.chain("nope")).missing == "nope"
    with pytest.raises(StoreUnavailable) as info:  # the same id twice: refused, a 503, not a crash
        await store.responses.save(record("r1"))
    assert info.value.status == 503 and info.value.code == "store_unavailable"

    assert await store.responses.delete("r2") is True
    assert await store.responses.delete("r2") is False
    broken = await store.responses.chain("r3")
    assert [r.id for r in broken.records] == ["r3"] and broken.missing == "r2"
    await store.close()


async def test_a_schema_change_on_an_existing_database_keeps_its_data(pg_url: str, tmp_path: Path) -> None:
    store = await Store.open(pg_url)
    await store.responses.save(record("r1"))
    await store.responses.save(record("r2", "r1"))
    await store.close()

    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "r0003_tag.py").write_text(NEXT_REVISION)
    db = await Database.open(pg_url, migrate_to=None)
    await migrate(db.engine, scripts=scripts)  # on PostgreSQL an ALTER TABLE in place
    await db.close()

    assert await scalar(pg_url, "SELECT version_num FROM alembic_version") == "0003"
    assert await scalar(pg_url, "SELECT count(*) FROM responses WHERE tag IS NULL") == 2
    with pytest.raises(ConfigError, match="^--db-url: .* schema this oaiproxy does not know .*'0003'"):
        await Store.open(pg_url)
    db = await Database.open(pg_url, migrate_to=None)
    assert [r.id for r in (await Store(db).responses.chain("r2")).records] == ["r1", "r2"]
    got = await Store(db).responses.get("r1")
    assert got is not None and got == record("r1", created_at=got.created_at)
    await db.close()


async def test_two_stores_on_one_database_see_each_others_writes(pg_url: str) -> None:
    one, two = await Store.open(pg_url), await Store.open(pg_url)  # as two proxies sharing --db-url
    try:
        await one.responses.save(record("a1"))
        assert (await two.responses.get("a1")) is not None
        await two.responses.save(record("a2", "a1"))
        assert [r.id for r in (await one.responses.chain("a2")).records] == ["a1", "a2"]
        assert await one.responses.delete("a1") is True
        assert (await two.responses.chain("a2")).missing == "a1"
    finally:
        await one.close()
        await two.close()


def test_four_proxies_opening_a_fresh_database_migrate_it_once(pg_url: str) -> None:
    code = ("import asyncio, sys; from oaiproxy.store import Store\n"
            "async def main():\n"
            "    s = await Store.open(sys.argv[1]); await s.close()\n"
            "asyncio.run(main())\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url], cwd=REPO, stderr=subprocess.PIPE)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    import asyncio

    assert asyncio.run(scalar(pg_url, "SELECT count(*) FROM alembic_version")) == 1
    assert asyncio.run(scalar(pg_url, "SELECT version_num FROM alembic_version")) == head_revision()


# ---------------------------------------------------------------- the server going away


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of the test's own: it is stopped and started again mid-test."""
    with running_postgres() as server:
        yield server


@pytest.fixture
async def api_on(own_server: PostgresServer, aiohttp_client: Any, aiohttp_server: Any,
                 templates_dir: Path) -> AsyncIterator[tuple[AsyncOpenAI, Store]]:
    """The real app on a scripted llama-server (tests/api/messages/conftest.py) with its store on PostgreSQL."""
    script = Script()
    server = await aiohttp_server(stand_in(script))
    upstream = LlamaServerClient(str(server.make_url("")), admission=Admission(slots=2, max_queue=8))
    s = Settings()
    engine = hermes_engine(templates_dir, upstream, "m", s)
    store = await Store.open(own_server.create_database("api"))
    state = ProxyState(engine=engine, client=upstream, model_ids=["m"], request_timeout=20, api_key=None,
                       cors_origins=[], store=store)
    http = await aiohttp_client(create_app(state, max_body_bytes=s.max_body_bytes))
    sdk = AsyncOpenAI(base_url=str(http.server.make_url("/v1")), api_key="unused", max_retries=0)
    yield sdk, store
    await sdk.close()
    await store.close()


async def test_a_server_gone_is_a_503_in_the_store_and_the_api_until_it_is_back(
        own_server: PostgresServer, api_on: tuple[AsyncOpenAI, Store]) -> None:
    sdk, store = api_on
    before = await sdk.responses.create(model="m", input="Before")
    assert before.output_text == "Hello there."

    own_server.stop()  # fast shutdown: the pool's open connections are cut as well
    with pytest.raises(StoreUnavailable) as info:
        await store.responses.get(before.id)
    assert info.value.status == 503 and info.value.code == "store_unavailable"
    with pytest.raises(StoreUnavailable):
        await store.responses.save(record("lost"))
    with pytest.raises(openai.InternalServerError) as api_info:
        await sdk.responses.create(model="m", input="Lost")
    assert api_info.value.status_code == 503 and api_info.value.body["code"] == "store_unavailable"  # type: ignore[index]
    with pytest.raises(openai.InternalServerError) as api_info:
        await sdk.responses.retrieve(before.id)
    assert api_info.value.status_code == 503
    events = [e async for e in await sdk.responses.create(model="m", input="Lost too", stream=True)]
    assert "response.completed" not in [e.type for e in events]
    assert events[-1].type == "error" and events[-1].code == "store_unavailable"  # type: ignore[union-attr]

    own_server.start()  # the same data, the same socket: the store reconnects by itself (pool_pre_ping)
    assert (await sdk.responses.retrieve(before.id)).id == before.id
    after = await sdk.responses.create(model="m", input="After", previous_response_id=before.id)
    assert (await sdk.responses.retrieve(after.id)).previous_response_id == before.id
    assert await store.responses.get("lost") is None  # nothing unsaved was kept
    assert [r.id for r in (await store.responses.chain(after.id)).records] == [before.id, after.id]
