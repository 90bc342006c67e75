"""The upstream pool on stand-in llama-servers, through the real app: routing, affinity, failover, drain, backoff.

Each test builds the proxy's chat app (Qwen2.5 template, Hermes dialect) on an :class:`UpstreamPool` of
stand-ins (tests/scaling/stand_in.py) and checks what a client sees, and where each generation ran.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from oaiproxy.api.app import ProxyState, create_app
from oaiproxy.runtime import pool as pool_module
from oaiproxy.runtime.llama_server import ManagedServer, ServerOptions
from oaiproxy.runtime.pool import AFFINITY_BLOCK, Member, UpstreamPool, prefix_hashes
from oaiproxy.runtime.upstream import Admission, LlamaServerClient
from tests._processes import write_stand_in
from tests.scaling.stand_in import Replica, replica_app
from tests.stand_in_app import hermes_engine

MODEL = "pool-test"
KEY = "k3y"
AUTH = {"Authorization": f"Bearer {KEY}"}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@dataclass
class Setup:
    replicas: list[Replica]
    servers: list[TestServer]
    pool: UpstreamPool
    http: TestClient[Any, Any]

    def upstream(self, i: int) -> str:
        return self.pool.members[i].name


async def build(templates_dir: Path, replicas: list[Replica], *, max_queue: int = 16, affinity: bool = True,
                health_interval: float = 0.2) -> Setup:
    servers = [TestServer(replica_app(r), host="127.0.0.1") for r in replicas]
    for s in servers:
        await s.start_server()
    members = []
    for r, s in zip(replicas, servers, strict=True):
        client = LlamaServerClient(str(s.make_url("")).rstrip("/"),
                                   admission=Admission(slots=r.slots, max_queue=1 << 16))
        members.append(Member(r.name, client, r.slots))
    pool = UpstreamPool(members, max_queue=max_queue, affinity=affinity, health_interval=health_interval)
    pool.start()
    engine = hermes_engine(templates_dir, pool, MODEL)
    state = ProxyState(engine=engine, client=pool, model_ids=[MODEL], request_timeout=20, api_key=KEY, cors_origins=[])
    http: TestClient[Any, Any] = TestClient(TestServer(create_app(state, max_body_bytes=1 << 20)))
    await http.start_server()
    return Setup(replicas, servers, pool, http)


@pytest.fixture
async def two(templates_dir: Path) -> AsyncIterator[Setup]:
    s = await build(templates_dir, [Replica("a", text=CALL, slots=1), Replica("b", text=CALL, slots=1)])
    yield s
    await close(s)


async def close(s: Setup) -> None:
    await s.http.close()
    await s.pool.close()
    for server in s.servers:
        await server.close()


def ask(text: str = "Weather in Paris?", **body: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], "tools": [TOOL], **body}


async def chat(s: Setup, body: dict[str, Any]) -> tuple[int, Any]:
    resp = await s.http.post("/v1/chat/completions", json=body, headers=AUTH)
    return resp.status, await resp.json()


def valid_call(answer: Any) -> None:
    call = answer["choices"][0]["message"]["tool_calls"][0]["function"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}


async def test_requests_spread_over_free_upstreams_never_over_their_slots(two: Setup) -> None:
    for r in two.replicas:
        r.token_delay = 0.02
    answers = await asyncio.gather(*(chat(two, ask(f"Weather in Paris? ({i})")) for i in range(6)))
    for status, body in answers:
        assert status == 200, body
        valid_call(body)
    a, b = two.replicas
    assert len(a.prompts) == 3 and len(b.prompts) == 3
    assert a.most_running == 1 and b.most_running == 1  # one slot each: never two at once


async def test_health_lists_every_upstream_with_its_state_and_in_flight(two: Setup) -> None:
    two.replicas[0].hold = asyncio.Event()
    two.pool._turn = -1  # the next choice is upstream a
    running = asyncio.create_task(chat(two, ask()))
    while not two.replicas[0].running:
        await asyncio.sleep(0.01)
    resp = await two.http.get("/health")
    body = await resp.json()
    assert resp.status == 200 and body["status"] == "ok"
    assert [(u["name"], u["state"], u["in_flight"], u["slots"]) for u in body["upstreams"]] == [
        ("a", "ready", 1, 1), ("b", "ready", 0, 1)]
    assert body["upstream"]["state"] == "ready" and body["upstream"]["routable"] == 2
    two.replicas[0].hold.set()
    assert (await running)[0] == 200
    # the metrics have one series per upstream
    text = await (await two.http.get("/metrics", headers=AUTH)).text()
    for member in two.pool.members:
        assert f'oaiproxy_upstream_up{{role="chat",upstream="{member.client.base_url}"}} 1.0' in text
        assert f'oaiproxy_upstream_in_flight{{upstream="{member.client.base_url}"}} 0.0' in text


async def test_a_failing_upstream_is_failed_over_and_taken_out(two: Setup) -> None:
    a, b = two.replicas
    a.fail = "500"
    two.pool.affinity = False  # in turn: only being out keeps upstream a from its share
    for i in range(4):
        status, body = await chat(two, ask(f"Weather in Paris? ({i})"))
        assert status == 200, body
        valid_call(body)
    assert len(b.prompts) == 4
    assert len(a.prompts) == 1  # tried once, then out of rotation
    view = {u["name"]: u for u in (await (await two.http.get("/health")).json())["upstreams"]}
    assert view["a"]["failed_before_first_event"] == 1


async def test_a_refused_connection_is_failed_over_too(two: Setup) -> None:
    a, b = two.replicas
    a.fail = "refuse"
    status, body = await chat(two, ask())
    assert status == 200, body
    valid_call(body)
    assert len(b.prompts) == 1
    resp = await two.http.post("/v1/chat/completions", json={**ask(), "stream": True}, headers=AUTH)
    assert resp.status == 200 and '"error"' not in await resp.text()
    assert len(b.prompts) == 2


async def test_a_dead_upstream_fails_over(templates_dir: Path) -> None:
    s = await build(templates_dir, [Replica("a", text=CALL), Replica("b", text=CALL)])
    try:
        await s.servers[0].close()  # connection refused from now on
        answers = await asyncio.gather(*(chat(s, ask(f"q{i}")) for i in range(4)))
        assert all(status == 200 for status, _ in answers)
        assert len(s.replicas[1].prompts) == 4
        resp = await s.http.get("/health")
        body = await resp.json()
        assert resp.status == 200 and body["upstream"]["state"] == "degraded"
        assert [u["state"] for u in body["upstreams"]] == ["down", "ready"]
    finally:
        await close(s)


async def test_a_stream_failing_before_its_first_chunk_runs_on_another(two: Setup) -> None:
    two.replicas[0].fail = "500"
    two.pool._turn = -1  # the next choice is upstream a
    resp = await two.http.post("/v1/chat/completions", json={**ask(), "stream": True}, headers=AUTH)
    assert resp.status == 200
    text = await resp.text()
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    assert not any("error" in c for c in chunks), text
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls and json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert text.rstrip().endswith("data: [DONE]")
    assert len(two.replicas[0].prompts) == 1 and len(two.replicas[1].prompts) == 1


async def test_a_stream_failing_after_its_first_chunk_ends_with_the_error_event(two: Setup) -> None:
    for r in two.replicas:
        r.fail = "after_first"
        r.text = "Some words of an answer that breaks off."
    resp = await two.http.post("/v1/chat/completions", json={**ask(), "stream": True}, headers=AUTH)
    assert resp.status == 200
    text = await resp.text()
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    assert events[-1]["error"]["type"] == "upstream_error", text
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert text.rstrip().endswith("data: [DONE]")
    # not run again: the client already had this generation's first chunk
    assert sum(len(r.prompts) for r in two.replicas) == 1


async def test_a_whole_answer_whose_upstream_breaks_mid_way_is_run_again(two: Setup) -> None:
    """A non-streamed request has sent the client nothing until it is done: a break at any point fails over."""
    a, b = two.replicas
    a.fail = "after_first"
    two.pool._turn = -1  # the next choice is upstream a
    status, body = await chat(two, ask())
    assert status == 200, body
    valid_call(body)
    assert len(a.prompts) == 1 and len(b.prompts) == 1


async def test_a_request_llama_server_rejects_is_not_retried(two: Setup) -> None:
    for r in two.replicas:
        r.fail = "400"
    status, body = await chat(two, ask())
    assert status == 400 and body["error"]["code"] == "upstream_rejected"
    assert sum(len(r.prompts) for r in two.replicas) == 1


async def test_every_upstream_down_is_a_503_with_retry_after(two: Setup) -> None:
    for r in two.replicas:
        r.fail = "500"
    status, body = await chat(two, ask())
    assert status == 502  # both tried, the last one's error
    assert sum(len(r.prompts) for r in two.replicas) == 2
    resp = await two.http.post("/v1/chat/completions", json=ask(), headers=AUTH)
    assert resp.status == 503 and resp.headers["Retry-After"] == "2"
    assert "no llama-server upstream is available" in (await resp.json())["error"]["message"]
    health = await two.http.get("/health")
    for r in two.replicas:
        r.healthy = False
    health = await two.http.get("/health")
    assert health.status == 503 and (await health.json())["upstream"]["state"] == "unavailable"


async def test_an_upstream_out_is_checked_again_with_backoff_and_comes_back(two: Setup) -> None:
    a, b = two.replicas
    a.healthy = False
    a.fail = "500"
    two.pool.affinity = False  # in turn, so that upstream a's share shows it is back
    status, _ = await chat(two, ask())
    assert status == 200
    member = two.pool.member("a")
    assert member is not None and not member.up
    # checked with growing gaps: 0.5, 1, 2 s... (a failed health check is a failure too)
    checks_before = a.health_checks
    await asyncio.sleep(1.6)
    assert 1 <= a.health_checks - checks_before <= 2
    assert member.failures >= 2
    a.healthy, a.fail = True, ""
    deadline = asyncio.get_running_loop().time() + 5
    while not member.up and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert member.up
    before = len(a.prompts)
    await asyncio.gather(*(chat(two, ask(f"q{i}")) for i in range(2)))
    assert len(a.prompts) == before + 1  # back in rotation: one of two side by side


async def test_backoff_doubles_up_to_the_cap() -> None:
    client = LlamaServerClient("http://127.0.0.1:9")
    member = Member("x", client, 1)
    pool = UpstreamPool([member], max_queue=1)
    gaps = []
    for _ in range(8):
        before = asyncio.get_running_loop().time()
        pool._take_out(member, "test")
        gaps.append(round(member.next_check - before, 1))
    assert gaps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    await pool.close()


async def test_drain_lets_running_requests_finish_and_sends_no_new_ones(two: Setup) -> None:
    a, b = two.replicas
    a.hold = asyncio.Event()
    two.pool.affinity = False  # in turn, so that upstream a's share shows it is back
    two.pool._turn = -1
    running = asyncio.create_task(chat(two, ask("long one")))
    while not a.running:
        await asyncio.sleep(0.01)
    resp = await two.http.post("/admin/upstreams/a/drain")
    assert resp.status == 401  # behind --api-key
    resp = await two.http.post("/admin/upstreams/a/drain", headers=AUTH)
    view = await resp.json()
    assert resp.status == 200 and view["state"] == "draining" and view["in_flight"] == 1 and not view["drained"]
    answers = await asyncio.gather(*(chat(two, ask(f"q{i}")) for i in range(3)))
    assert all(status == 200 for status, _ in answers)
    assert len(a.prompts) == 1 and len(b.prompts) == 3
    waiting = asyncio.create_task(two.http.post("/admin/upstreams/a/drain?wait=5", headers=AUTH))
    await asyncio.sleep(0.1)
    a.hold.set()
    status, body = await running
    assert status == 200
    valid_call(body)  # the drained upstream's request finished
    drained = await (await waiting).json()
    assert drained["drained"] and drained["state"] == "drained"
    listing = await (await two.http.get("/admin/upstreams", headers=AUTH)).json()
    assert [u["state"] for u in listing["data"]] == ["drained", "ready"]
    resp = await two.http.post("/admin/upstreams/a/resume", headers=AUTH)
    assert (await resp.json())["state"] == "ready"
    await asyncio.gather(*(chat(two, ask(f"r{i}")) for i in range(2)))
    assert len(a.prompts) == 2
    resp = await two.http.post("/admin/upstreams/nope/drain", headers=AUTH)
    assert resp.status == 404 and "a, b" in (await resp.json())["error"]["message"]


async def test_queue_beyond_the_pools_slots_and_limit_is_a_429(templates_dir: Path) -> None:
    s = await build(templates_dir, [Replica("a", text=CALL, slots=1), Replica("b", text=CALL, slots=1)], max_queue=1)
    try:
        for r in s.replicas:
            r.hold = asyncio.Event()
        busy = [asyncio.create_task(chat(s, ask(f"q{i}"))) for i in range(3)]  # two generating, one queued
        while s.pool.gate.waiting < 1:
            await asyncio.sleep(0.01)
        resp = await s.http.post("/v1/chat/completions", json=ask(), headers=AUTH)
        assert resp.status == 429 and resp.headers["Retry-After"] == "1"
        for r in s.replicas:
            assert r.hold is not None
            r.hold.set()
        assert [status for status, _ in await asyncio.gather(*busy)] == [200, 200, 200]
    finally:
        await close(s)


# ---------------------------------------------------------------- affinity

def conversation(n: int, turns: int) -> list[dict[str, Any]]:
    """A chat of ``turns`` user turns, long enough that each turn's prompt extends the last one's."""
    messages: list[dict[str, Any]] = []
    for t in range(turns):
        messages.append({"role": "user", "content": f"Conversation {n}, question {t}: " + "tell me more. " * 40})
        if t < turns - 1:
            messages.append({"role": "assistant", "content": f"Answer {t} of conversation {n}. " * 20})
    return messages


async def run_conversations(s: Setup) -> tuple[list[set[str]], int, int]:
    """Three conversations, turn by turn, interleaved; which upstreams each ran on, and cached/total chars."""
    where: list[set[str]] = [set(), set(), set()]
    for turn in range(1, 5):
        for n in range(3):
            before = [len(r.prompts) for r in s.replicas]
            status, _ = await chat(s, {"model": MODEL, "messages": conversation(n, turn), "max_tokens": 8})
            assert status == 200
            for r, b in zip(s.replicas, before, strict=True):
                if len(r.prompts) > b:
                    where[n].add(r.name)
    cached = sum(sum(r.cached) for r in s.replicas)
    total = sum(sum(len(p) for p in r.prompts) for r in s.replicas)
    return where, cached, total


async def test_affinity_sends_a_conversation_back_to_its_cache(templates_dir: Path) -> None:
    results = {}
    for affinity in (True, False):
        s = await build(templates_dir, [Replica("a", slots=2), Replica("b", slots=2)], affinity=affinity)
        try:
            results[affinity] = await run_conversations(s)
        finally:
            await close(s)
    where, cached, total = results[True]
    assert all(len(w) == 1 for w in where), where  # each conversation stayed on one upstream
    where_off, cached_off, _ = results[False]
    assert any(len(w) == 2 for w in where_off)  # without affinity, turns wander
    # at most 60%: each turn has cached the previous one, the first turns nothing
    assert cached > 0.5 * total and cached > 3 * cached_off, (cached, cached_off, total)


async def test_affinity_gives_way_when_its_upstream_is_saturated(two: Setup) -> None:
    a, b = two.replicas
    for r in two.replicas:
        r.text = "ok"
    body = {"model": MODEL, "messages": conversation(0, 1), "max_tokens": 8}
    assert (await chat(two, body))[0] == 200
    first = a if a.prompts else b
    other = b if first is a else a
    first.hold = asyncio.Event()
    held = asyncio.create_task(chat(two, {**body, "messages": conversation(0, 2)}))  # affinity: to `first`
    while not first.running:
        await asyncio.sleep(0.01)
    status, _ = await chat(two, {**body, "messages": conversation(0, 3)})  # `first` is full: the other one
    assert status == 200 and len(other.prompts) == 1
    first.hold.set()
    assert (await held)[0] == 200
    assert two.pool.affinity_hits == 1


def test_prefix_hashes_are_block_prefixes() -> None:
    text = "x" * AFFINITY_BLOCK * 3 + "tail"
    hashes = prefix_hashes(text)
    assert len(hashes) == 3 and len(set(hashes)) == 3
    assert prefix_hashes(text[:AFFINITY_BLOCK * 2]) == hashes[:2]
    assert prefix_hashes("y" + text[1:])[0] != hashes[0]
    assert prefix_hashes("short") == [] and prefix_hashes([1, 2, 3]) == []


def test_the_affinity_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "AFFINITY_ENTRIES", 4)
    member = Member("x", LlamaServerClient("http://127.0.0.1:9"), 1)

    async def run() -> None:
        pool = UpstreamPool([member], max_queue=1)
        pool._remember(prefix_hashes("a" * AFFINITY_BLOCK * 3), member)
        pool._remember(prefix_hashes("b" * AFFINITY_BLOCK * 3), member)
        assert len(pool._affinity) == 4
        await pool.close()

    asyncio.run(run())


async def test_a_rolling_restart_drains_and_restarts_replicas_one_at_a_time(tmp_path: Path) -> None:
    """SIGHUP's work: each spawned replica drained (its running generation finishes first), restarted, put back,
    while the other one stays in rotation."""
    binary = write_stand_in(tmp_path, "import time\nserve_health_in_background()\nwhile True:\n    time.sleep(1)\n")
    servers = [ManagedServer(ServerOptions(binary=binary, model=tmp_path / "m.gguf", startup_timeout=30),
                             progress=False) for _ in range(2)]
    await asyncio.gather(*(s.start() for s in servers))
    members = [Member(f"replica-{i}", LlamaServerClient(s.url), 1, managed=s) for i, s in enumerate(servers)]
    pool = UpstreamPool(members, max_queue=4)
    try:
        pids = [s.pid for s in servers]
        members[0].in_flight = 1  # a generation still running on replica-0
        task = asyncio.create_task(pool.rolling_restart(timeout=10))
        await asyncio.sleep(0.3)
        assert members[0].state == "draining" and servers[0].pid == pids[0]  # waits for it
        assert members[1].routable and pool.gate.slots == 2  # replica-1's slot + the one still finishing
        members[0].in_flight = 0
        pool.gate.update()
        seen = set()
        while not task.done():
            seen.add((members[0].routable, members[1].routable))
            await asyncio.sleep(0.01)
        assert await task == ["replica-0", "replica-1"]
        assert (False, False) not in seen  # never both out
        assert all(s.pid not in pids for s in servers) and [m.state for m in members] == ["ready", "ready"]
        assert all(not s.restarts for s in servers)  # on purpose: not counted as crashes
    finally:
        await pool.close()
        await asyncio.gather(*(s.stop() for s in servers))
