"""Conversations on both backends: a database made by the first schema (0001), with responses and a PikoBrain
thread in it, upgrades to the conversations schema keeping all of it (SQLite and PostgreSQL); the whole API flow
on a real PostgreSQL server (tests/store/postgres.py); two stores (two proxies) appending to one conversation on
PostgreSQL at once, each append landing whole at its own positions."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import select, text

from oaiproxy.store import Database, Store
from oaiproxy.store.database import head_revision
from oaiproxy.store.schema import Message, Thread
from tests.api.conversations.conftest import MODEL, open_proxy
from tests.store.postgres import PostgresServer
from tests.store.test_store import record


async def _old_database(url: str) -> None:
    """A database as the first oaiproxy with a store left it: schema 0001, two responses and a thread."""
    db = await Database.open(url, migrate_to="0001")
    store = Store(db)
    await store.responses.save(record("r1"))
    await store.responses.save(record("r2", "r1"))
    async with db.session(write=True) as s:
        s.add(Thread(id="thr_1", name="kitchen"))
        await s.flush()
        s.add(Message(thread_id="thr_1", position=0, role="user", content="set a timer"))
    await db.close()


async def _check_upgraded(url: str) -> None:
    store = await Store.open(url)  # what a proxy does at start: migrate to the newest
    try:
        async with store.db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == head_revision()
        assert head_revision() == "0002"
        assert [r.id for r in (await store.responses.chain("r2")).records] == ["r1", "r2"]
        got = await store.responses.get("r1")
        assert got is not None and got == record("r1", created_at=got.created_at)
        async with store.db.session() as s:
            assert [m.content for m in (await s.execute(select(Message))).scalars()] == ["set a timer"]
        made, _ = await store.conversations.create({"k": "v"}, [{"id": "msg_1", "type": "message", "role": "user",
                                                                 "content": [{"type": "input_text", "text": "hi"}]}])
        items = await store.conversations.items(made.id)
        assert items is not None and [i.id for i in items] == ["msg_1"]
    finally:
        await store.close()


async def test_a_sqlite_database_of_the_first_schema_upgrades_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    await _old_database(url)
    with sqlite3.connect(path) as conn:
        before = conn.execute("SELECT * FROM responses ORDER BY id").fetchall()
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0001"
    await _check_upgraded(url)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM responses ORDER BY id").fetchall() == before


async def test_a_postgresql_database_of_the_first_schema_upgrades_keeping_its_data(
        postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    await _old_database(url)
    await _check_upgraded(url)


async def test_the_api_on_postgresql(postgres_server: PostgresServer, aiohttp_client: Any, aiohttp_server: Any,
                                     templates_dir: Path) -> None:
    p = await open_proxy(aiohttp_client, aiohttp_server, templates_dir, postgres_server.create_database())
    try:
        made = await p.sdk.conversations.create(metadata={"on": "postgres"},
                                                items=[{"role": "user", "content": "My name is Zed."}])
        p.script.pieces = ["Hi", " Zed."]
        res = await p.sdk.responses.create(model=MODEL, conversation=made.id, input="Greet me.")
        assert res.conversation is not None and res.conversation.id == made.id
        assert "<|im_start|>user\nMy name is Zed." in p.prompt()
        streamed = [e async for e in await p.sdk.responses.create(model=MODEL, conversation=made.id,
                                                                    input="Again.", stream=True)]
        assert streamed[-1].type == "response.completed"
        items = [i async for i in p.sdk.conversations.items.list(made.id, order="asc")]
        assert [i.content[0].text for i in items] == ["My name is Zed.", "Greet me.", "Hi Zed.",  # type: ignore[union-attr]
                                                      "Again.", "Hi Zed."]
        page = await p.sdk.conversations.items.list(made.id, limit=2)
        assert [i.id for i in page.data] == [items[4].id, items[3].id] and page.has_more
        assert (await p.sdk.conversations.retrieve(made.id)).metadata == {"on": "postgres"}
        assert (await p.sdk.responses.retrieve(res.id)).conversation.id == made.id  # type: ignore[union-attr]
        await p.sdk.conversations.items.delete(items[0].id, conversation_id=made.id)
        assert len([i async for i in p.sdk.conversations.items.list(made.id)]) == 4
        await p.sdk.conversations.delete(made.id)
        with pytest.raises(openai.NotFoundError) as info:
            await p.sdk.conversations.retrieve(made.id)
        assert isinstance(info.value.body, dict) and info.value.body["code"] == "conversation_not_found"
    finally:
        await p.sdk.close()
        assert p.store is not None
        await p.store.close()


async def test_two_stores_appending_at_once_on_postgresql_each_land_whole(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    one, two = await Store.open(url), await Store.open(url)  # as two proxies sharing --db-url
    try:
        made, _ = await one.conversations.create({})

        def batch(tag: str) -> list[dict[str, Any]]:
            return [{"id": f"msg_{tag}_{i}", "type": "message", "role": "user",
                     "content": [{"type": "input_text", "text": tag}]} for i in range(3)]

        results = await asyncio.gather(*(store.conversations.append(made.id, batch(f"{n}{k}"))
                                         for k in range(4) for n, store in (("a", one), ("b", two))))
        assert all(r is not None and len(r) == 3 for r in results)
        items = await two.conversations.items(made.id)
        assert items is not None and len(items) == 24
        assert [i.position for i in items] == list(range(24))  # no position taken twice, none lost
        for start in range(0, 24, 3):  # each append's three items together, in their order
            assert [i.id.rsplit("_", 1)[1] for i in items[start:start + 3]] == ["0", "1", "2"]
            assert len({i.id.split("_")[1] for i in items[start:start + 3]}) == 1
    finally:
        await one.close()
        await two.close()
