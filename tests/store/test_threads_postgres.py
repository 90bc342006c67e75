"""Threads on a real PostgreSQL server shared by two stores, as two proxies on one database would share it.

There the per-thread lock of one process protects nothing: two transactions can both read the same end
of a thread, and only the unique ``(thread_id, position)`` index (or the unique thread name, for a thread
both create) refuses the second commit. These tests race two stores and check that one wins, the other
gets a :class:`ThreadBusy` (the 409), and no message is lost or interleaved.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from oaiproxy.store import Store, ThreadBusy
from oaiproxy.store.threads import NewMessage, ThreadStore
from tests.store.postgres import PostgresServer


@pytest.fixture
async def two(postgres_server: PostgresServer) -> AsyncIterator[tuple[Store, Store]]:
    url = postgres_server.create_database()
    a = await Store.open(url)
    b = await Store.open(url)
    yield a, b
    await a.close()
    await b.close()


async def _race(a: ThreadStore, b: ThreadStore, name: str) -> list[BaseException | list[object]]:
    seen_a, seen_b = await asyncio.gather(a.history(name), b.history(name))  # both read the same end
    return await asyncio.gather(
        a.append(name, seen_a, [NewMessage(role="user", content="from a"), NewMessage(role="assistant", content="A")]),
        b.append(name, seen_b, [NewMessage(role="user", content="from b"), NewMessage(role="assistant", content="B")]),
        return_exceptions=True)  # type: ignore[return-value]


async def test_two_stores_creating_one_thread_at_once_one_wins_the_other_is_busy(two: tuple[Store, Store]) -> None:
    a, b = two
    for round_ in range(5):  # a new thread each time: the race on the unique name
        results = await _race(a.threads, b.threads, f"new-{round_}")
        busy = [r for r in results if isinstance(r, ThreadBusy)]
        assert len(busy) == 1 and busy[0].status == 409 and busy[0].param == "thread", results
        page = await a.threads.page(f"new-{round_}", limit=10)
        assert page is not None and [m.content for m in page.messages] in (["from a", "A"], ["from b", "B"])


async def test_two_stores_appending_at_one_position_one_wins_and_nothing_interleaves(two: tuple[Store, Store]) -> None:
    a, b = two
    await a.threads.append("shared", await a.threads.history("shared"), [NewMessage(role="user", content="start")])
    for _ in range(5):  # the race on (thread_id, position)
        results = await _race(a.threads, b.threads, "shared")
        assert sum(isinstance(r, ThreadBusy) for r in results) == 1, results
    page = await b.threads.page("shared", limit=100)
    assert page is not None
    contents = [m.content for m in page.messages]
    assert len(contents) == 11 and [m.position for m in page.messages] == list(range(11))
    for user, answer in zip(contents[1::2], contents[2::2], strict=True):  # each turn whole, never mixed
        assert (user, answer) in (("from a", "A"), ("from b", "B"))


async def test_retrying_after_busy_loses_no_message(two: tuple[Store, Store]) -> None:
    async def writer(store: ThreadStore, who: str) -> int:
        retries = 0
        for i in range(8):
            while True:
                try:
                    read = await store.history("log", 1)
                    await store.append("log", read, [NewMessage(role="user", content=f"{who}{i}")])
                    break
                except ThreadBusy:
                    retries += 1
        return retries

    await asyncio.gather(writer(two[0].threads, "a"), writer(two[1].threads, "b"))
    page = await two[0].threads.page("log", limit=100)
    assert page is not None
    contents = [m.content for m in page.messages]
    assert sorted(contents) == sorted([f"a{i}" for i in range(8)] + [f"b{i}" for i in range(8)])
    assert [c for c in contents if c[0] == "a"] == [f"a{i}" for i in range(8)]  # each writer's order kept
    assert [m.position for m in page.messages] == list(range(16))
