"""``GET /metrics``, ``X-Request-Id`` and the request log line, through the real app on a scripted llama-server.

Each test sends requests as a client would and reads ``/metrics`` as Prometheus would (parsed by
prometheus_client's own text parser), so what is pinned is what an operator sees: requests by route,
model and status, tokens, tool calls returned, grammar use by dialect, queue depth while a request
waits, server-tool latency by source, database errors, and the plan cache's hits.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from oaiproxy.api.app import ProxyState, create_app
from oaiproxy.metrics import JsonFormatter, request_id
from oaiproxy.runtime.upstream import Admission, LlamaServerClient
from oaiproxy.server_tools.catalog import ToolCatalog
from oaiproxy.settings import ConfigError, build_settings
from oaiproxy.store import Store
from tests.api.messages.conftest import Script
from tests.api.messages.conftest import stand_in as messages_stand_in
from tests.server_tools.service import SPEC, running_service
from tests.server_tools.stand_in import Rounds, call, stand_in
from tests.stand_in_app import hermes_engine

MODEL = "m"
KEY = "sk-metrics-test-3c1d"
AUTH = {"Authorization": f"Bearer {KEY}"}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
CALL_TEXT = call("get_weather", {"city": "Rome"})


@dataclass
class Proxy:
    rounds: Rounds
    http: TestClient[Any, Any]
    upstream: LlamaServerClient
    state: ProxyState


def with_health(app: web.Application) -> web.Application:
    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/health", health)
    return app


async def _proxy(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path, *, slots: int = 2,
                 catalog: ToolCatalog | None = None, store: Store | None = None,
                 upstream_app: web.Application | None = None) -> Proxy:
    rounds = Rounds()
    server = await aiohttp_server(with_health(upstream_app or stand_in(rounds)))
    upstream = LlamaServerClient(str(server.make_url("")), admission=Admission(slots=slots, max_queue=8))
    state = ProxyState(engine=hermes_engine(templates_dir, upstream, MODEL), client=upstream, model_ids=[MODEL],
                       request_timeout=20, api_key=KEY, cors_origins=[], catalog=catalog, store=store)
    http = await aiohttp_client(create_app(state, max_body_bytes=1 << 20))
    return Proxy(rounds, http, upstream, state)


@pytest.fixture
async def served(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path) -> AsyncIterator[Proxy]:
    p = await _proxy(aiohttp_client, aiohttp_server, templates_dir)
    yield p
    await p.upstream.close()


async def scrape(p: Proxy) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    resp = await p.http.get("/metrics", headers=AUTH)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(await resp.text()) for s in family.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels`` (0 when Prometheus would see none)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def chat(p: Proxy, headers: dict[str, str] | None = None, **body: Any) -> tuple[int, Any, Any]:
    resp = await p.http.post("/v1/chat/completions", json={"messages": ASK, **body},
                             headers={**AUTH, **(headers or {})})
    return resp.status, await resp.json(), resp.headers


CHAT = "/v1/chat/completions"


async def test_a_tool_call_shows_on_metrics(served: Proxy) -> None:
    before = await scrape(served)
    assert value(before, "oaiproxy_requests_total", route=CHAT, method="POST", model=MODEL, status="200") == 0
    served.rounds.texts = [call("get_weather", {"city": "Paris"})]
    status, body, _ = await chat(served, tools=[WEATHER])
    assert status == 200 and body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    m = await scrape(served)
    assert value(m, "oaiproxy_requests_total", route=CHAT, method="POST", model=MODEL, status="200") == 1
    assert value(m, "oaiproxy_tool_calls_total", model=MODEL, dialect="hermes", outcome="returned") == 1
    assert value(m, "oaiproxy_tool_calls_total", model=MODEL, dialect="hermes", outcome="refused") == 0
    # tool_choice auto: a lazy grammar, and the trigger woke it (the answer held a call)
    assert value(m, "oaiproxy_generations_total", model=MODEL, dialect="hermes", grammar="lazy") == 1
    assert value(m, "oaiproxy_lazy_grammar_triggered_total", model=MODEL, dialect="hermes") == 1
    # the stand-in's last event: 40 evaluated, 30 of them cached, 5 predicted
    assert value(m, "oaiproxy_prompt_tokens_total", model=MODEL) == 40
    assert value(m, "oaiproxy_prompt_tokens_cached_total", model=MODEL) == 30
    assert value(m, "oaiproxy_completion_tokens_total", model=MODEL) == 5
    assert value(m, "oaiproxy_request_duration_seconds_count", route=CHAT, model=MODEL) == 1
    assert value(m, "oaiproxy_time_to_first_token_seconds_count", route=CHAT, model=MODEL) == 1
    assert value(m, "oaiproxy_queue_wait_seconds_count") == 1
    # the scrape before this one was counted too, under its own route
    assert value(m, "oaiproxy_requests_total", route="/metrics", method="GET", model="", status="200") == 1
    assert value(m, "oaiproxy_upstream_up", upstream=served.upstream.base_url, role="chat") == 1
    assert value(m, "oaiproxy_upstream_slots", upstream=served.upstream.base_url) == 2
    assert value(m, "process_cpu_seconds_total") > 0


async def test_text_and_a_required_call_count_apart(served: Proxy) -> None:
    served.rounds.texts = ["It is sunny."]
    assert (await chat(served, tools=[WEATHER]))[0] == 200
    served.rounds.texts = [call("get_weather", {"city": "Paris"})]
    assert (await chat(served, tools=[WEATHER], tool_choice="required"))[0] == 200
    assert (await chat(served))[0] == 200  # no tools: no grammar
    m = await scrape(served)
    assert value(m, "oaiproxy_generations_total", model=MODEL, dialect="hermes", grammar="lazy") == 1
    assert value(m, "oaiproxy_generations_total", model=MODEL, dialect="hermes", grammar="eager") == 1
    assert value(m, "oaiproxy_generations_total", model=MODEL, dialect="hermes", grammar="none") == 1
    assert value(m, "oaiproxy_lazy_grammar_triggered_total", model=MODEL, dialect="hermes") == 0  # text only
    assert value(m, "oaiproxy_tool_calls_total", model=MODEL, dialect="hermes", outcome="returned") == 1
    assert value(m, "oaiproxy_requests_total", route=CHAT, method="POST", model=MODEL, status="200") == 3


async def test_a_call_that_fails_validation_counts_as_refused(served: Proxy) -> None:
    """The stand-in writes what no grammar would let through (the real llama-server enforces it): the
    validator refuses the call, the client gets a 500, never the call, and the scrape says so."""
    served.rounds.texts = [call("get_weather", {"city": 12})]
    status, body, _ = await chat(served, tools=[WEATHER])
    assert status == 500 and body["error"]["code"] == "invalid_tool_call"
    m = await scrape(served)
    assert value(m, "oaiproxy_tool_calls_total", model=MODEL, dialect="hermes", outcome="refused") == 1
    assert value(m, "oaiproxy_tool_calls_total", model=MODEL, dialect="hermes", outcome="returned") == 0
    assert value(m, "oaiproxy_requests_total", route=CHAT, method="POST", model=MODEL, status="500") == 1


async def test_a_call_cut_by_the_token_limit_counts_as_cut(aiohttp_client: Any, aiohttp_server: Any,
                                                            templates_dir: Path) -> None:
    """llama-server stops at max_tokens inside the second call: the first is returned, the cut one dropped
    (finish_reason "length"), and the scrape counts one of each."""
    script = Script(pieces=[CALL_TEXT, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par'],
                    final={"stop_type": "limit"})
    p = await _proxy(aiohttp_client, aiohttp_server, templates_dir, upstream_app=messages_stand_in(script))
    try:
        status, body, _ = await chat(p, tools=[WEATHER], max_tokens=30)
        assert status == 200 and body["choices"][0]["finish_reason"] == "length", body
        assert [c["function"]["arguments"] for c in body["choices"][0]["message"]["tool_calls"]] == [
            '{"city": "Rome"}']
        m = await scrape(p)
        assert value(m, "oaiproxy_tool_calls_total", model=MODEL, dialect="hermes", outcome="returned") == 1
        assert value(m, "oaiproxy_tool_calls_total", model=MODEL, dialect="hermes", outcome="cut") == 1
    finally:
        await p.upstream.close()


def failing_mid_stream() -> web.Application:
    """A llama-server that writes one token, then an error line (as llama-server reports a failure mid-stream)."""
    async def completion(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: " + json.dumps({"content": "Hel", "stop": False}).encode() + b"\n\n")
        await response.write(b"error: the slot fell over\n\n")
        return response

    app = web.Application()
    app.router.add_post("/completion", completion)
    return app


async def test_a_stream_ended_by_an_error_event_logs_its_code(aiohttp_client: Any, aiohttp_server: Any,
                                                              templates_dir: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    p = await _proxy(aiohttp_client, aiohttp_server, templates_dir, upstream_app=failing_mid_stream())
    try:
        with caplog.at_level(logging.INFO, logger="oaiproxy.request"):
            resp = await p.http.post(CHAT, json={"messages": ASK, "stream": True},
                                     headers={**AUTH, "X-Request-Id": "mid-1", "Origin": "http://app.example"})
            text = await resp.text()
        assert resp.status == 200 and '"error"' in text and resp.headers["X-Request-Id"] == "mid-1"
        line = next(r for r in caplog.records if r.name == "oaiproxy.request")
        assert line.fields["status"] == 200 and line.fields["outcome"] == "upstream_error"  # type: ignore[attr-defined]
        m = await scrape(p)
        assert value(m, "oaiproxy_requests_total", route=CHAT, method="POST", model=MODEL, status="200") == 1
        assert value(m, "oaiproxy_time_to_first_token_seconds_count", route=CHAT, model=MODEL) == 1
    finally:
        await p.upstream.close()


async def test_cors_exposes_the_request_id(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path) -> None:
    p = await _proxy(aiohttp_client, aiohttp_server, templates_dir)
    p.state.cors_origins = ["http://app.example"]
    try:
        status, _, headers = await chat(p, headers={"Origin": "http://app.example", "X-Request-Id": "web-1"})
        assert status == 200 and headers["X-Request-Id"] == "web-1"
        assert "X-Request-Id" in headers["Access-Control-Expose-Headers"]
    finally:
        await p.upstream.close()


async def test_a_400_and_a_404_count_with_their_status(served: Proxy) -> None:
    resp = await served.http.post(CHAT, json={"messages": "not a list"}, headers=AUTH)
    assert resp.status == 400
    status, body, _ = await chat(served, model="no-such-model")
    assert status == 404 and body["error"]["code"] == "model_not_found"
    resp = await served.http.post(CHAT, json={"messages": ASK})  # no key
    assert resp.status == 401
    resp = await served.http.get("/v1/nowhere/at/all", headers=AUTH)
    assert resp.status == 404
    m = await scrape(served)
    # a request that reached no model has no model label: a client's made-up name never becomes one
    assert value(m, "oaiproxy_requests_total", route=CHAT, method="POST", model="", status="400") == 1
    assert value(m, "oaiproxy_requests_total", route=CHAT, method="POST", model="", status="404") == 1
    assert value(m, "oaiproxy_requests_total", route=CHAT, method="POST", model="", status="401") == 1
    assert value(m, "oaiproxy_requests_total", route="unmatched", method="GET", model="", status="404") == 1
    assert not any(labels and dict(labels).get("model") == "no-such-model" for _, labels in m)


async def test_metrics_needs_the_api_key(served: Proxy) -> None:
    resp = await served.http.get("/metrics")
    assert resp.status == 401 and (await resp.json())["error"]["type"] == "authentication_error"
    resp = await served.http.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401
    resp = await served.http.get("/metrics", headers=AUTH)
    assert resp.status == 200 and "oaiproxy_requests_total" in await resp.text()


async def test_request_id_echoed_generated_and_replaced(served: Proxy) -> None:
    status, _, headers = await chat(served, headers={"X-Request-Id": "trace-42.a/b:c"})
    assert status == 200 and headers["X-Request-Id"] == "trace-42.a/b:c"
    status, _, headers = await chat(served)
    assert status == 200 and re.fullmatch(r"req_[0-9a-f]{24}", headers["X-Request-Id"])
    first = headers["X-Request-Id"]
    assert (await chat(served))[2]["X-Request-Id"] != first  # a new one each time
    for bad in ("x" * 129, "has space", "tab\there", "caf\u00e9"):
        status, _, headers = await chat(served, headers={"X-Request-Id": bad.encode().decode("latin-1")})
        assert status == 200, bad  # replaced, never refused
        assert re.fullmatch(r"req_[0-9a-f]{24}", headers["X-Request-Id"]), bad
    # errors and streams carry it too
    resp = await served.http.post(CHAT, json={"messages": ASK}, headers={"X-Request-Id": "no-key-1"})
    assert resp.status == 401 and resp.headers["X-Request-Id"] == "no-key-1"
    resp = await served.http.post(CHAT, json={"messages": ASK, "stream": True},
                                 headers={**AUTH, "X-Request-Id": "stream-1"})
    assert resp.status == 200 and resp.headers["X-Request-Id"] == "stream-1"
    assert (await resp.text()).rstrip().endswith("data: [DONE]")
    resp = await served.http.get("/health", headers={"X-Request-Id": "probe"})
    assert resp.headers["X-Request-Id"] == "probe"


def test_request_id_rules() -> None:
    assert request_id("a" * 128) == "a" * 128
    assert request_id("a" * 129).startswith("req_")
    assert request_id("").startswith("req_") and request_id(None).startswith("req_")
    assert request_id("line\nbreak").startswith("req_")


async def test_health_and_metrics_show_the_queue_while_a_request_waits(aiohttp_client: Any, aiohttp_server: Any,
                                                                       templates_dir: Path) -> None:
    p = await _proxy(aiohttp_client, aiohttp_server, templates_dir, slots=1)
    release = asyncio.Event()
    generating = asyncio.Event()

    async def hold() -> None:
        generating.set()
        await release.wait()

    p.rounds.during = hold
    try:
        first = asyncio.create_task(chat(p))
        await asyncio.wait_for(generating.wait(), 10)
        second = asyncio.create_task(chat(p))
        url = p.upstream.base_url
        for _ in range(200):  # the second request reaches the admission queue
            if p.upstream.admission.waiting:
                break
            await asyncio.sleep(0.01)
        m = await scrape(p)
        assert value(m, "oaiproxy_queue_depth", upstream=url) == 1
        assert value(m, "oaiproxy_upstream_in_flight", upstream=url) == 1
        assert value(m, "oaiproxy_requests_in_flight") == 3  # two chats and this scrape
        health = await (await p.http.get("/health")).json()
        assert health["queue"] == {"waiting": 1, "generating": 1, "limit": 8, "rejected": 0}
        release.set()
        assert (await first)[0] == 200 and (await second)[0] == 200
        m = await scrape(p)
        assert value(m, "oaiproxy_queue_depth", upstream=url) == 0
        assert value(m, "oaiproxy_upstream_in_flight", upstream=url) == 0
        assert value(m, "oaiproxy_queue_wait_seconds_count") == 2
    finally:
        release.set()
        await p.upstream.close()


async def test_a_full_queue_counts_its_429s(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path) -> None:
    p = await _proxy(aiohttp_client, aiohttp_server, templates_dir, slots=1)
    p.upstream.admission.max_queue = 0
    release = asyncio.Event()
    generating = asyncio.Event()

    async def hold() -> None:
        generating.set()
        await release.wait()

    p.rounds.during = hold
    try:
        first = asyncio.create_task(chat(p))
        await asyncio.wait_for(generating.wait(), 10)
        status, body, _ = await chat(p)
        assert status == 429 and body["error"]["code"] == "queue_full"
        m = await scrape(p)
        assert value(m, "oaiproxy_queue_rejected_total", upstream=p.upstream.base_url) == 1
        release.set()
        assert (await first)[0] == 200
        m = await scrape(p)
        assert value(m, "oaiproxy_requests_total", route=CHAT, method="POST", model=MODEL, status="429") == 1
    finally:
        release.set()
        await p.upstream.close()


async def test_plan_cache_hits_show_on_metrics(served: Proxy) -> None:
    served.rounds.texts = ["Sunny."]
    for _ in range(3):
        assert (await chat(served, tools=[WEATHER]))[0] == 200
    changed = json.loads(json.dumps(WEATHER))
    changed["function"]["description"] = "Weather in a town"
    assert (await chat(served, tools=[changed]))[0] == 200
    m = await scrape(served)
    assert value(m, "oaiproxy_plan_cache_lookups_total", model=MODEL, result="miss") == 2
    assert value(m, "oaiproxy_plan_cache_lookups_total", model=MODEL, result="hit") == 2
    assert value(m, "oaiproxy_plan_cache_hit_ratio", model=MODEL) == 0.5
    assert value(m, "oaiproxy_plan_cache_entries", model=MODEL) == 2
    assert 0 < value(m, "oaiproxy_plan_cache_bytes", model=MODEL) <= value(m, "oaiproxy_plan_cache_max_bytes",
                                                                           model=MODEL)


async def test_two_apps_in_one_process_count_apart(aiohttp_client: Any, aiohttp_server: Any,
                                                   templates_dir: Path) -> None:
    a = await _proxy(aiohttp_client, aiohttp_server, templates_dir)
    b = await _proxy(aiohttp_client, aiohttp_server, templates_dir)
    try:
        assert (await chat(a))[0] == 200
        assert (await chat(a))[0] == 200
        assert value(await scrape(a), "oaiproxy_requests_total", route=CHAT, method="POST", model=MODEL,
                     status="200") == 2
        assert value(await scrape(b), "oaiproxy_requests_total", route=CHAT, method="POST", model=MODEL,
                     status="200") == 0
    finally:
        await a.upstream.close()
        await b.upstream.close()


async def test_one_log_line_per_request(served: Proxy, caplog: pytest.LogCaptureFixture) -> None:
    served.rounds.texts = [call("get_weather", {"city": "Paris"})]
    with caplog.at_level(logging.DEBUG, logger="oaiproxy.request"):
        status, _, headers = await chat(served, tools=[WEATHER], headers={"X-Request-Id": "log-me-1"})
        assert status == 200
        assert (await chat(served, model="nope"))[0] == 404
        await served.http.get("/health")
    lines = [r for r in caplog.records if r.name == "oaiproxy.request"]
    assert len(lines) == 3
    ok, missing, health = lines
    fields = ok.fields  # type: ignore[attr-defined]
    assert ok.levelno == logging.INFO
    assert {k: fields[k] for k in ("request_id", "method", "path", "status", "model", "dialect", "prompt_tokens",
                                   "cached_tokens", "completion_tokens", "tool_calls", "outcome")} == {
        "request_id": "log-me-1", "method": "POST", "path": CHAT, "status": 200, "model": MODEL,
        "dialect": "hermes", "prompt_tokens": 40, "cached_tokens": 30, "completion_tokens": 5, "tool_calls": 1,
        "outcome": "ok"}
    assert fields["duration_ms"] > 0 and 0 < fields["ttft_ms"] <= fields["duration_ms"]
    assert ok.getMessage().startswith("request_id=log-me-1 method=POST path=/v1/chat/completions status=200")
    assert "tool_calls=1" in ok.getMessage() and "outcome=ok" in ok.getMessage()
    assert missing.fields["outcome"] == "model_not_found" and missing.fields["status"] == 404  # type: ignore[attr-defined]
    assert missing.fields["model"] is None and missing.levelno == logging.INFO  # type: ignore[attr-defined]
    assert health.levelno == logging.DEBUG  # probes and scrapes are quiet
    # --log-format json: the same line as one JSON object
    obj = json.loads(JsonFormatter().format(ok))
    assert obj["request_id"] == "log-me-1" and obj["logger"] == "oaiproxy.request" and obj["level"] == "info"
    assert obj["message"] == "POST /v1/chat/completions 200" and obj["tool_calls"] == 1 and obj["status"] == 200
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", obj["time"])


async def test_json_log_lines_inside_a_request_carry_its_id(served: Proxy) -> None:
    """With --log-format json every line logged while a request is served (here the warning of a 502)
    names the request's id, and the request's own line ends it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("oaiproxy")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    served.rounds.fail = True
    try:
        status, body, _ = await chat(served, headers={"X-Request-Id": "broken-1"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert status == 502, body
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    warning = next(x for x in lines if x["logger"] == "oaiproxy.app")
    assert warning["level"] == "warning" and warning["request_id"] == "broken-1"
    last = lines[-1]
    assert last["logger"] == "oaiproxy.request" and last["request_id"] == "broken-1"
    assert last["status"] == 502 and last["outcome"] == "upstream_error" and last["model"] == MODEL


def test_log_format_is_a_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert build_settings({}).log_format == "text"
    assert build_settings({"log_format": "JSON"}).log_format == "json"
    monkeypatch.setenv("OAIPROXY_LOG_FORMAT", "json")
    assert build_settings({}).log_format == "json"
    monkeypatch.delenv("OAIPROXY_LOG_FORMAT")
    config = tmp_path / "c.yaml"
    config.write_text("log-format: json\n")
    assert build_settings({"config": config}).log_format == "json"
    with pytest.raises(ConfigError, match="--log-format: must be one of text, json"):
        build_settings({"log_format": "xml"})


BRAINS = {"petbot": {"tools": ["pets_getPet", "pets_fail"], "max_iterations": 2}}


async def test_server_tool_latency_by_source(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path,
                                             tmp_path: Path) -> None:
    async with running_service() as service:
        (tmp_path / "pets.json").write_text(json.dumps(SPEC))
        tools = tmp_path / "tools.yaml"
        tools.write_text(json.dumps({"sources": [{"type": "openapi", "url": "pets.json", "namespace": "pets",
                                                  "base_url": service + "/api", "timeout": 2}], "brains": BRAINS}))
        catalog = await ToolCatalog.open(tools)
        p = await _proxy(aiohttp_client, aiohttp_server, templates_dir, catalog=catalog)
        try:
            p.rounds.texts = [call("pets_getPet", {"path": {"pet_id": 7}}) + call("pets_fail", {}), "Rex."]
            status, body, _ = await chat(p, model="petbot")
            assert status == 200 and body["choices"][0]["message"]["content"] == "Rex.", body
            m = await scrape(p)
            assert value(m, "oaiproxy_server_tool_duration_seconds_count", source="pets", outcome="ok") == 1
            assert value(m, "oaiproxy_server_tool_duration_seconds_count", source="pets", outcome="error") == 1
            # both rounds' tokens, and the server calls counted as returned (to the loop)
            assert value(m, "oaiproxy_prompt_tokens_total", model=MODEL) == 80
            assert value(m, "oaiproxy_tool_calls_total", model=MODEL, dialect="hermes", outcome="returned") == 2
        finally:
            await p.upstream.close()
            await catalog.stop()


async def test_database_errors_count(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path,
                                     tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = await Store.open(f"sqlite+aiosqlite:///{db}")
    p = await _proxy(aiohttp_client, aiohttp_server, templates_dir, store=store)
    try:
        with sqlite3.connect(db) as conn:
            conn.execute("ALTER TABLE responses RENAME TO responses_away")
        resp = await p.http.post("/v1/responses", json={"model": MODEL, "input": "Hi"}, headers=AUTH)
        assert resp.status == 503 and (await resp.json())["error"]["code"] == "store_unavailable"
        m = await scrape(p)
        assert value(m, "oaiproxy_store_errors_total", backend="sqlite") == 1
        assert value(m, "oaiproxy_requests_total", route="/v1/responses", method="POST", model=MODEL,
                     status="503") == 1
    finally:
        await p.upstream.close()
        await store.close()
