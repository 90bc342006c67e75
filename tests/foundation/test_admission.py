"""Admission: slots and a bounded queue in front of llama-server."""

from __future__ import annotations

import asyncio

import pytest

from oaiproxy.errors import Overloaded
from oaiproxy.runtime.upstream import Admission


async def test_waits_for_a_slot_then_refuses_past_the_queue() -> None:
    gate = Admission(slots=1, max_queue=1)
    release = asyncio.Event()
    order: list[str] = []

    async def job(name: str) -> None:
        async with gate.slot():
            order.append(f"{name} in")
            await release.wait()
            order.append(f"{name} out")

    first = asyncio.create_task(job("a"))
    await asyncio.sleep(0)
    second = asyncio.create_task(job("b"))  # waits in the queue
    await asyncio.sleep(0)
    assert (gate.active, gate.waiting) == (1, 1)
    with pytest.raises(Overloaded) as exc:
        async with gate.slot():
            pass
    assert exc.value.status == 429 and exc.value.headers["Retry-After"] == "1"
    release.set()
    await asyncio.gather(first, second)
    assert order == ["a in", "a out", "b in", "b out"]
    assert (gate.active, gate.waiting) == (0, 0)


async def test_cancelled_waiter_leaves_the_queue() -> None:
    gate = Admission(slots=1, max_queue=1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with gate.slot():
            await hold.wait()

    h = asyncio.create_task(holder())
    await asyncio.sleep(0)

    async def waiter() -> None:
        async with gate.slot():
            pass

    w = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    assert gate.waiting == 1
    w.cancel()  # the client went away while queued
    await asyncio.gather(w, return_exceptions=True)
    assert gate.waiting == 0
    hold.set()
    await h
    async with gate.slot():  # the slot is free again
        assert gate.active == 1
