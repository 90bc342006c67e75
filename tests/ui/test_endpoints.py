"""The operator UI's JSON endpoints and its page's routes through the real app, on the scripted llama-server
stand-in and a real SQLite store (no model, no browser): what they answer, and the 400s naming the field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from oaiproxy.api.app import ProxyState, create_app
from oaiproxy.runtime.upstream import Admission, LlamaServerClient
from oaiproxy.store import Store
from oaiproxy.store.threads import History, NewMessage
from tests.server_tools.stand_in import Rounds, call, stand_in
from tests.stand_in_app import hermes_engine

MODEL = "m"
KEY = "sk-ui-test-91b3"
AUTH = {"Authorization": f"Bearer {KEY}"}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
          "required": ["name", "age"], "additionalProperties": False}
WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@dataclass
class Setup:
    rounds: Rounds
    http: TestClient[Any, Any]
    store: Store


@pytest.fixture
async def setup(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path, tmp_path: Path) -> AsyncIterator[Setup]:
    rounds = Rounds()
    upstream_app = stand_in(rounds)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    upstream_app.router.add_get("/health", health)
    server = await aiohttp_server(upstream_app)
    upstream = LlamaServerClient(str(server.make_url("")), admission=Admission(slots=2, max_queue=4))
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'ui.db'}")
    state = ProxyState(engine=hermes_engine(templates_dir, upstream, MODEL), client=upstream, model_ids=[MODEL],
                       request_timeout=20, api_key=KEY, cors_origins=[], store=store)
    http = await aiohttp_client(create_app(state, max_body_bytes=1 << 20))
    yield Setup(rounds, http, store)
    await store.close()
    await upstream.close()


async def post(s: Setup, path: str, body: Any) -> tuple[int, Any]:
    resp = await s.http.post(path, data=body if isinstance(body, str) else json.dumps(body), headers=AUTH)
    return resp.status, await resp.json()


def assert_error(status: int, body: Any, param: str, code: str | None = None) -> None:
    assert status == 400, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error


# ---------------------------------------------------------------- the page and the key


async def test_the_page_and_its_files_are_open_and_every_data_route_needs_the_key(setup: Setup) -> None:
    page = await setup.http.get("/ui")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert '<label for="key-input">API key</label>' in html and "/ui/static/app.js" in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from elsewhere
    for name in ("app.js", "style.css"):
        resp = await setup.http.get(f"/ui/static/{name}")
        assert resp.status == 200
        assert "https://" not in await resp.text()
    root = await setup.http.get("/", allow_redirects=False)
    assert root.status == 302 and root.headers["Location"] == "/ui"
    for method, path in (("GET", "/ui/api/status"), ("GET", "/ui/api/threads"), ("POST", "/ui/api/grammar"),
                         ("POST", "/ui/api/grammar/sample"), ("POST", "/ui/api/chat"), ("POST", "/"),
                         ("GET", "/some-thread")):
        resp = await setup.http.request(method, path, data="{}")
        assert resp.status == 401, (method, path)
        assert (await resp.json())["error"]["code"] == "invalid_api_key"
    resp = await setup.http.get("/ui/api/status", headers={"Authorization": "Bearer sk-wrong"})
    assert resp.status == 401
    assert (await setup.http.get("/ui/api/status", headers=AUTH)).status == 200


async def test_ui_is_not_a_thread_name(setup: Setup) -> None:
    resp = await setup.http.put("/ui", data="hello", headers=AUTH)
    assert_error(resp.status, await resp.json(), "thread", "reserved_name")


# ---------------------------------------------------------------- status


async def test_status_names_the_model_the_dialect_and_why_the_slots_and_recent_errors(setup: Setup) -> None:
    setup.rounds.fail = True  # a failing generation is logged: it shows up among the recent errors
    status, _ = await post(setup, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]})
    assert status == 502
    resp = await setup.http.get("/ui/api/status", headers=AUTH)
    body = await resp.json()
    assert body["model"] == MODEL and body["models"] == [MODEL] and body["brains"] == []
    assert body["style"]["name"] == "hermes"
    assert body["style"]["reason"].startswith("detected from the chat template (Qwen-Qwen2.5-7B-Instruct.jinja)")
    assert body["upstream"]["healthy"] is True and body["upstream"]["managed"] is False
    assert body["queue"] == {"slots": 2, "active": 0, "waiting": 0, "max_queue": 4}
    assert body["tools"] is None and body["store"] is True
    assert any("502" in e["message"] and e["level"] == "WARNING" for e in body["recent_errors"])


# ---------------------------------------------------------------- threads


async def test_threads_are_listed_by_name_a_page_at_a_time(setup: Setup) -> None:
    for name, count in (("beta", 3), ("alpha", 1), ("gamma", 2)):
        await setup.store.threads.append(name, History([]), [NewMessage(role="user", content=f"m{i}")
                                                              for i in range(count)], user="ann")
    resp = await setup.http.get("/ui/api/threads?limit=2", headers=AUTH)
    page = await resp.json()
    assert [(t["name"], t["messages"], t["user"]) for t in page["data"]] == [("alpha", 1, "ann"), ("beta", 3, "ann")]
    assert page["has_more"] is True and page["last_id"] == "beta"
    page = await (await setup.http.get("/ui/api/threads?limit=2&after=beta", headers=AUTH)).json()
    assert [t["name"] for t in page["data"]] == ["gamma"] and page["has_more"] is False
    assert isinstance(page["data"][0]["updated_at"], int)
    # deleted on the thread route itself: gone from the list
    assert (await setup.http.delete("/beta", headers=AUTH)).status == 200
    page = await (await setup.http.get("/ui/api/threads", headers=AUTH)).json()
    assert [t["name"] for t in page["data"]] == ["alpha", "gamma"]
    for bad in ("0", "101", "x"):
        resp = await setup.http.get(f"/ui/api/threads?limit={bad}", headers=AUTH)
        assert_error(resp.status, await resp.json(), "limit", "invalid_value")


# ---------------------------------------------------------------- grammar lab


async def test_a_schema_becomes_the_converters_grammar(setup: Setup) -> None:
    from oaiproxy.grammar import schema_to_gbnf

    status, body = await post(setup, "/ui/api/grammar", {"schema": PERSON})
    assert status == 200, body
    assert body["gbnf"] == schema_to_gbnf(PERSON) and body["gbnf"].startswith("root ::=")
    assert body["rules"] >= 3 and body["bytes"] == len(body["gbnf"])


@pytest.mark.parametrize(("body", "param", "code", "says"), [
    ("not json", "body", "invalid_json", "not valid JSON"),
    ([1, 2], "body", "invalid_value", "JSON object"),
    ({}, "schema", "missing_required_parameter", "'schema' is required"),
    ({"schema": "string"}, "schema", "invalid_schema", "not str"),
    ({"schema": {"type": "strnig"}}, "schema", "invalid_schema", "schema:"),
    ({"schema": {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?=x)a"}}}},
     "schema", "invalid_schema", "/properties/a"),
    ({"schema": {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}}, "schema", "invalid_schema", "$ref"),
])
async def test_a_bad_schema_is_a_400_naming_the_field(setup: Setup, body: Any, param: str, code: str,
                                                      says: str) -> None:
    status, answer = await post(setup, "/ui/api/grammar", body)
    assert_error(status, answer, param, code)
    assert says in answer["error"]["message"]
    status, answer = await post(setup, "/ui/api/grammar/sample", body)
    assert_error(status, answer, param, code)
    assert setup.rounds.bodies == []  # nothing reached llama-server


@pytest.mark.parametrize(("field", "value"), [("n", 0), ("n", 6), ("n", 2.5), ("max_tokens", 0),
                                              ("max_tokens", 5000), ("temperature", -1), ("temperature", "hot"),
                                              ("seed", -3), ("prompt", 7)])
async def test_bad_sampling_options_are_a_400_naming_them(setup: Setup, field: str, value: Any) -> None:
    status, answer = await post(setup, "/ui/api/grammar/sample", {"schema": PERSON, field: value})
    assert_error(status, answer, field, "invalid_value")


async def test_samples_run_under_the_grammar_and_are_checked_by_the_validator(setup: Setup) -> None:
    setup.rounds.texts = ['{"name": "Ann", "age": 7}']
    status, body = await post(setup, "/ui/api/grammar/sample", {"schema": PERSON, "n": 2, "seed": 40,
                                                                "max_tokens": 50, "temperature": 0.5})
    assert status == 200, body
    assert [(s["seed"], s["valid"], s["value"]) for s in body["data"]] == [(40, True, {"name": "Ann", "age": 7}),
                                                                          (41, True, {"name": "Ann", "age": 7})]
    sent = setup.rounds.bodies
    assert len(sent) == 2 and {b["seed"] for b in sent} == {40, 41}
    assert all(b["grammar"] == body["gbnf"] and b["n_predict"] == 50 and b["temperature"] == 0.5 for b in sent)
    assert json.dumps(PERSON) in sent[0]["prompt"]
    # what the grammar would never let through is still checked, not trusted
    setup.rounds.texts = ['{"name": "Ann", "age": -1}']
    _, body = await post(setup, "/ui/api/grammar/sample", {"schema": PERSON, "n": 1, "prompt": "Person:"})
    assert body["data"][0]["valid"] is False and "minimum" in body["data"][0]["errors"][0]
    assert setup.rounds.bodies[-1]["prompt"] == "Person:"
    setup.rounds.texts = ['{"name": "A']
    _, body = await post(setup, "/ui/api/grammar/sample", {"schema": PERSON, "n": 1})
    assert body["data"][0]["valid"] is False and "not JSON" in body["data"][0]["errors"][0]


# ---------------------------------------------------------------- the playground's chat


def sse(text: str) -> list[Any]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]


async def test_a_streamed_chat_ends_with_what_was_sent_to_llama_server_and_the_raw_text(setup: Setup) -> None:
    raw = call("get_weather", {"city": "Oslo"})
    setup.rounds.texts = [raw]
    resp = await setup.http.post("/ui/api/chat", headers=AUTH, data=json.dumps({
        "model": MODEL, "stream": True, "tools": WEATHER, "tool_choice": "required",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}]}))
    assert resp.status == 200
    text = await resp.text()
    assert text.endswith("data: [DONE]\n\n")
    events = sse(text)
    chunks, inspection = events[:-1], events[-1]
    calls = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls") or []]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == \
        [("get_weather", {"city": "Oslo"})]
    assert inspection["object"] == "oaiproxy.inspection" and len(inspection["exchanges"]) == 1
    exchange, sent = inspection["exchanges"][0], setup.rounds.bodies[0]
    assert exchange["prompt"] == sent["prompt"] and "Weather in Oslo?" in exchange["prompt"]
    assert exchange["grammar"] == sent["grammar"] and "get_weather" in exchange["grammar"]
    assert [{k: v for k, v in t.items() if k != "kind"} for t in exchange["grammar_triggers"]] == \
        sent.get("grammar_triggers", [])
    assert exchange["stop"] == sent.get("stop", []) and exchange["params"]["n_predict"] == sent["n_predict"]
    assert exchange["raw"] == raw and exchange["stop_type"] == "eos"


async def test_a_whole_chat_answer_comes_with_its_inspection_and_errors_keep_the_chat_shape(setup: Setup) -> None:
    setup.rounds.texts = ["Hello there."]
    status, body = await post(setup, "/ui/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200, body
    assert body["completion"]["choices"][0]["message"]["content"] == "Hello there."
    assert body["inspection"]["exchanges"][0]["raw"] == "Hello there."
    assert body["inspection"]["exchanges"][0]["grammar"] is None
    status, body = await post(setup, "/ui/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                                                      "tool_choice": "required"})
    assert_error(status, body, "tool_choice")
    status, body = await post(setup, "/ui/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert status == 404 and body["error"]["param"] == "model"


# ---------------------------------------------------------------- with a --tools file: a brain's rounds


@pytest.fixture
async def brain_setup(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path,
                      tmp_path: Path) -> AsyncIterator[Setup]:
    from oaiproxy.server_tools.catalog import ToolCatalog
    from tests.server_tools.service import SPEC, running_service

    async with running_service() as service:
        rounds = Rounds()
        server = await aiohttp_server(stand_in(rounds))
        upstream = LlamaServerClient(str(server.make_url("")), admission=Admission(slots=2, max_queue=4))
        (tmp_path / "pets.json").write_text(json.dumps(SPEC))
        tools = tmp_path / "tools.yaml"
        tools.write_text(json.dumps({"sources": [{"type": "openapi", "url": "pets.json", "namespace": "pets",
                                                  "base_url": service + "/api", "timeout": 1,
                                                  "headers": {"X-Api-Key": {"value": "s3cret"}}}],
                                     "brains": {"petbot": {"tools": ["pets_getPet"], "max_iterations": 2}}}))
        catalog = await ToolCatalog.open(tools)
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'ui.db'}")
        state = ProxyState(engine=hermes_engine(templates_dir, upstream, MODEL), client=upstream, model_ids=[MODEL],
                           request_timeout=20, api_key=KEY, cors_origins=[], catalog=catalog, store=store)
        http = await aiohttp_client(create_app(state, max_body_bytes=1 << 20))
        yield Setup(rounds, http, store)
        await store.close()
        await upstream.close()


async def test_a_brains_rounds_are_one_exchange_each_and_its_sources_show_in_the_status(brain_setup: Setup) -> None:
    s = brain_setup
    first = call("pets_getPet", {"path": {"pet_id": 7}})
    s.rounds.texts = [first, "Pet 7 is Rex."]
    resp = await s.http.post("/ui/api/chat", headers=AUTH, data=json.dumps({
        "model": "petbot", "stream": True, "messages": [{"role": "user", "content": "What is pet 7?"}]}))
    assert resp.status == 200
    events = sse(await resp.text())
    steps = [e["step"] for e in events if e.get("step")]
    assert [st["type"] for st in steps] == ["tool_calls", "tool_results"]
    inspection = events[-1]
    assert [x["raw"] for x in inspection["exchanges"]] == [first, "Pet 7 is Rex."]
    assert [x["prompt"] for x in inspection["exchanges"]] == s.rounds.prompts
    # the second round's prompt holds the first round's call and the service's answer
    assert "Rex" in inspection["exchanges"][1]["prompt"] and "pets_getPet" in inspection["exchanges"][1]["prompt"]
    status = await (await s.http.get("/ui/api/status", headers=AUTH)).json()
    assert status["brains"] == ["petbot"] and "petbot" in status["models"]
    [source] = status["tools"]["sources"]
    assert source["name"] == "pets" and source["error"] is None and "pets_getPet" in source["tools"]
    assert isinstance(source["loaded_at"], float | int)


async def test_lazy_triggers_are_shown_as_sent_and_by_name(setup: Setup) -> None:
    setup.rounds.texts = ["No call needed."]
    status, body = await post(setup, "/ui/api/chat", {"model": MODEL, "tools": WEATHER, "tool_choice": "auto",
                                                      "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 200, body
    [exchange] = body["inspection"]["exchanges"]
    sent = setup.rounds.bodies[0]
    assert exchange["grammar_lazy"] is True and sent["grammar_lazy"] is True
    assert sent["grammar_triggers"], "hermes with tool_choice auto sends lazy triggers"
    assert [(t["type"], t["value"]) for t in exchange["grammar_triggers"]] == \
        [(t["type"], t["value"]) for t in sent["grammar_triggers"]]
    assert {t["kind"] for t in exchange["grammar_triggers"]} <= {"token", "word", "pattern", "pattern_full"}
    assert any("<tool_call>" in t["value"] for t in exchange["grammar_triggers"])
