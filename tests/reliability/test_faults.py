"""Faults on the real llama-server: a killed upstream, a vanished client, a full queue, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import aiohttp
import pytest

from tests._processes import ProxyProcess, pid_alive

pytestmark = pytest.mark.integration

# Banning end-of-sequence and Gemma's newline tokens (107-137: runs of 1 to 31 newlines) means the
# model cannot end its turn nor write the default template's stop strings: it generates until max_tokens.
NO_END = {str(t): -100 for t in [1, 106, *range(107, 138)]}
LONG = {"messages": [{"role": "user", "content": "Write a long story about a dragon."}],
        "max_tokens": 2000, "temperature": 1.0, "seed": 7, "logit_bias": NO_END}


@pytest.fixture(scope="module")
def one_slot_proxy(default_model_path):
    p = ProxyProcess(["--parallel", "1", "--ctx-size", "4096", "--max-queue", "1"])
    yield p
    p.stop()


async def health(session: aiohttp.ClientSession, proxy: ProxyProcess) -> tuple[int, dict[str, Any]]:
    async with session.get(proxy.url + "/health") as r:
        return r.status, await r.json()


async def slots_busy(session: aiohttp.ClientSession, upstream_url: str) -> int:
    async with session.get(upstream_url + "/slots") as r:
        return sum(1 for s in await r.json() if s.get("is_processing"))


async def wait_idle(session: aiohttp.ClientSession, upstream_url: str, timeout: float = 20) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await slots_busy(session, upstream_url) == 0:
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"llama-server slot still busy {timeout} s after the client left")


async def test_client_disconnect_frees_the_slot(one_slot_proxy: ProxyProcess) -> None:
    async with aiohttp.ClientSession() as session:
        _, h = await health(session, one_slot_proxy)
        upstream_url = h["upstream"]["url"]
        # streaming: read a few chunks, then hang up
        resp = await session.post(one_slot_proxy.base_url + "/chat/completions", json={**LONG, "stream": True})
        assert resp.status == 200
        for _ in range(5):
            await resp.content.readline()
        assert await slots_busy(session, upstream_url) == 1
        resp.close()
        await wait_idle(session, upstream_url)
        # non-streaming: give up waiting for the answer
        task = asyncio.create_task(session.post(one_slot_proxy.base_url + "/chat/completions", json=LONG))
        for _ in range(100):
            if await slots_busy(session, upstream_url):
                break
            await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    async with aiohttp.ClientSession() as session:
        await wait_idle(session, upstream_url)


async def test_queue_overflow_is_429(one_slot_proxy: ProxyProcess) -> None:
    async with aiohttp.ClientSession() as session:
        _, h = await health(session, one_slot_proxy)

        async def call(max_tokens: int) -> tuple[int, dict[str, Any], str | None]:
            async with session.post(one_slot_proxy.base_url + "/chat/completions",
                                    json={**LONG, "max_tokens": max_tokens}) as r:
                return r.status, await r.json(), r.headers.get("Retry-After")

        tasks = [asyncio.create_task(call(300))]
        for _ in range(200):  # until the first one holds the only slot
            if await slots_busy(session, h["upstream"]["url"]):
                break
            await asyncio.sleep(0.05)
        tasks += [asyncio.create_task(call(4)) for _ in range(3)]
        results = await asyncio.gather(*tasks)
    statuses = sorted(r[0] for r in results)
    assert statuses.count(200) == 2, results  # one generating, one queued
    refused = [r for r in results if r[0] == 429]
    assert len(refused) == 2
    for _, body_, retry in refused:
        assert body_["error"]["type"] == "rate_limit_error" and body_["error"]["code"] == "queue_full"
        assert retry == "1"


async def test_llama_server_killed_mid_stream(default_model_path) -> None:
    proxy = ProxyProcess(["--parallel", "1", "--ctx-size", "2048"])
    try:
        server_pid = proxy.children()[0]
        async with aiohttp.ClientSession() as session:
            resp = await session.post(proxy.base_url + "/chat/completions", json={**LONG, "stream": True})
            assert resp.status == 200
            for _ in range(3):
                await resp.content.readline()
            os.kill(server_pid, signal.SIGKILL)
            events = []
            async for raw in resp.content:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    events.append(line[6:])
            assert events[-1] == "[DONE]"
            errors = [json.loads(e) for e in events[:-1] if "error" in json.loads(e)]
            assert len(errors) == 1 and errors[0]["error"]["type"] == "upstream_error"
            # meanwhile a request gets a clean error, not a hang
            async with session.post(proxy.base_url + "/chat/completions", json={**LONG, "max_tokens": 4}) as r:
                if r.status != 200:
                    assert r.status in (502, 503) and (await r.json())["error"]["message"]
            # the supervisor brings it back; the next request succeeds
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                status, h = await health(session, proxy)
                if status == 200 and h["upstream"]["state"] == "ready":
                    break
                await asyncio.sleep(0.2)
            assert status == 200, h
            assert proxy.children() and proxy.children()[0] != server_pid
            async with session.post(proxy.base_url + "/chat/completions",
                                    json={**LONG, "max_tokens": 8}) as r:
                assert r.status == 200
                assert (await r.json())["choices"][0]["message"]["content"] is not None
        assert "exited with code" in proxy.log() and "restarting llama-server" in proxy.log()
    finally:
        proxy.stop()


async def test_llama_server_killed_mid_request_non_streaming(default_model_path) -> None:
    proxy = ProxyProcess(["--parallel", "1", "--ctx-size", "2048"])
    try:
        server_pid = proxy.children()[0]
        async with aiohttp.ClientSession() as session:
            task = asyncio.create_task(session.post(proxy.base_url + "/chat/completions", json=LONG))
            _, h = await health(session, proxy)
            for _ in range(200):
                if await slots_busy(session, h["upstream"]["url"]):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            os.kill(server_pid, signal.SIGKILL)
            resp = await asyncio.wait_for(task, 60)
            body = await resp.json()
            assert resp.status in (502, 503), body
            assert body["error"]["message"]
    finally:
        proxy.stop()


async def test_sigterm_drains_in_flight_requests(default_model_path) -> None:
    proxy = ProxyProcess(["--parallel", "1", "--ctx-size", "2048"])
    server_pid = proxy.children()[0]
    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(session.post(proxy.base_url + "/chat/completions",
                                                json={**LONG, "max_tokens": 48}))
        for _ in range(100):
            if await slots_busy(session, (await health(session, proxy))[1]["upstream"]["url"]):
                break
            await asyncio.sleep(0.05)
        proxy.proc.send_signal(signal.SIGTERM)
        resp = await asyncio.wait_for(task, 120)
        body = await resp.json()
        assert resp.status == 200, body
        assert body["usage"]["completion_tokens"] > 0
    assert proxy.proc.wait(60) == 0
    assert not pid_alive(server_pid)
