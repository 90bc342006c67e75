"""The agent loop through the real app, on a scripted llama-server stand-in and the real pet service.

The stand-in says what each round's model writes (a Hermes ``<tool_call>`` or text), so these tests pin
what the loop does with it: which calls run, what the next prompt carries, the steps and usage the
client sees, the round limit, failures, mixed client/server calls, and the plain ``POST /`` interface.
The real model runs the same paths in test_real_loop.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from oaiproxy.api.app import ProxyState, create_app
from oaiproxy.runtime.upstream import Admission, LlamaServerClient
from oaiproxy.server_tools.catalog import ToolCatalog
from tests.server_tools.service import SPEC, running_service
from tests.server_tools.stand_in import Rounds, call, stand_in
from tests.stand_in_app import hermes_engine

MODEL = "m"
KEY = "sk-loop-test-91ab"


@dataclass
class Setup:
    rounds: Rounds
    http: TestClient[Any, Any]
    service: str
    catalog: ToolCatalog
    upstream: LlamaServerClient


def tools_file(tmp_path: Path, service: str, brains: dict[str, Any]) -> Path:
    spec = tmp_path / "pets.json"
    spec.write_text(json.dumps(SPEC))
    path = tmp_path / "tools.yaml"
    path.write_text(json.dumps({
        "sources": [{"type": "openapi", "url": "pets.json", "namespace": "pets", "base_url": service + "/api",
                     "timeout": 1, "headers": {"X-Api-Key": {"value": "s3cret"}}}],
        "brains": brains}))
    return path


BRAINS = {
    "petbot": {"system_prompt": "You help with pets. Today is {{ date }}. User: {{ user }}.",
               "tools": ["pets_getPet", "pets_fail", "pets_slow", "pets_secret"], "max_iterations": 2},
    "once": {"tools": ["pets"], "max_iterations": 1, "tool_choice": "required"},
}


@pytest.fixture
async def setup(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path, tmp_path: Path) -> AsyncIterator[Setup]:
    async with running_service() as service:
        rounds = Rounds()
        server = await aiohttp_server(stand_in(rounds))
        upstream = LlamaServerClient(str(server.make_url("")), admission=Admission(slots=2, max_queue=8))
        engine = hermes_engine(templates_dir, upstream, MODEL)
        catalog = await ToolCatalog.open(tools_file(tmp_path, service, BRAINS))
        state = ProxyState(engine=engine, client=upstream, model_ids=[MODEL], request_timeout=20, api_key=KEY,
                           cors_origins=[], catalog=catalog)
        http = await aiohttp_client(create_app(state, max_body_bytes=1 << 20))
        yield Setup(rounds, http, service, catalog, upstream)
        await upstream.close()


AUTH = {"Authorization": f"Bearer {KEY}"}
ASK = [{"role": "user", "content": "What is pet 7?"}]


async def chat(s: Setup, **body: Any) -> tuple[int, Any]:
    resp = await s.http.post("/v1/chat/completions", json={"messages": ASK, **body}, headers=AUTH)
    return resp.status, await resp.json()


async def test_brain_runs_the_call_and_answers_with_the_steps(setup: Setup) -> None:
    setup.rounds.texts = [call("pets_getPet", {"path": {"pet_id": 7}}), "Pet 7 is Rex."]
    status, body = await chat(setup, model="petbot", user="ann")
    assert status == 200, body
    assert body["model"] == "petbot"
    msg = body["choices"][0]["message"]
    assert msg["content"] == "Pet 7 is Rex." and msg["tool_calls"] is None
    assert body["choices"][0]["finish_reason"] == "stop"
    calls, results = body["steps"]
    assert calls["type"] == "tool_calls" and calls["round"] == 1
    assert calls["tool_calls"][0]["function"] == {"name": "pets_getPet", "arguments": '{"path": {"pet_id": 7}}'}
    assert results["type"] == "tool_results" and not results["results"][0]["is_error"]
    assert json.loads(results["results"][0]["content"])["name"] == "Rex"  # the real service answered
    assert results["results"][0]["tool_call_id"] == calls["tool_calls"][0]["id"]
    first, second = setup.rounds.bodies
    # the brain's prompt, rendered, leads; the second round reads the service's answer
    assert "You help with pets. Today is 20" in first["prompt"] and "User: ann." in first["prompt"]
    assert '"name": "Rex"' in second["prompt"] and "pets_getPet" in second["prompt"]
    assert body["usage"]["prompt_tokens"] == 80 and body["usage"]["completion_tokens"] == 10  # both rounds


async def test_stream_shows_steps_as_they_happen(setup: Setup) -> None:
    setup.rounds.texts = [call("pets_getPet", {"path": {"pet_id": 7}}), "Rex."]
    resp = await setup.http.post("/v1/chat/completions", headers=AUTH, json={
        "model": "petbot", "messages": ASK, "stream": True, "stream_options": {"include_usage": True}})
    assert resp.status == 200
    chunks = [json.loads(line[6:]) for line in (await resp.text()).splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    steps = [c["step"] for c in chunks if "step" in c]
    assert [s["type"] for s in steps] == ["tool_calls", "tool_results"]
    assert all(c["choices"] == [] for c in chunks if "step" in c)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Rex."
    assert not any(c["choices"][0]["delta"].get("tool_calls") for c in chunks if c["choices"])
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and
            c["choices"][0]["finish_reason"]] == ["stop"]
    assert chunks[-1]["usage"]["prompt_tokens"] == 80
    # the role chunk comes once, before anything else of the answer
    roles = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("role")]
    assert len(roles) == 1 and chunks.index(roles[0]) == 0


async def test_round_limit_ends_with_an_answer_without_server_tools(setup: Setup) -> None:
    setup.rounds.texts = [call("pets_getPet", {"path": {"pet_id": 1}}), "Done."]
    status, body = await chat(setup, model="once")
    assert status == 200, body
    assert [s["type"] for s in body["steps"]] == ["tool_calls", "tool_results"]
    first, last = setup.rounds.bodies
    assert first.get("grammar") and "pets_getPet" in first["prompt"]  # required: the call is enforced at once
    assert "pets_getPet" not in last["prompt"].split("<|im_start|>user")[0]  # no tools offered any more
    assert not last.get("grammar") or "pets_getPet" not in last.get("grammar", "")
    assert body["choices"][0]["message"]["content"] == "Done."


async def test_a_failing_and_a_slow_service_are_errors_the_model_reads(setup: Setup) -> None:
    setup.rounds.texts = [call("pets_fail", {}) + "\n" + call("pets_slow", {}), "Sorry."]
    status, body = await chat(setup, model="petbot")
    assert status == 200, body
    fail, slow = body["steps"][1]["results"]
    assert fail["is_error"] and "500" in fail["content"] and "database is down" in fail["content"]
    assert slow["is_error"] and "timeout" in slow["content"]
    assert slow["duration_ms"] < 4000  # the 1 s timeout, not the service's 5 s
    assert "Error: " in setup.rounds.bodies[1]["prompt"]


async def test_secret_header_is_sent_and_never_listed(setup: Setup) -> None:
    setup.rounds.texts = [call("pets_secret", {}), "ok"]
    status, body = await chat(setup, model="petbot")
    assert body["steps"][1]["results"][0]["content"] == "the secret"
    resp = await setup.http.get("/v1/tools", headers=AUTH)
    listing = await resp.json()
    assert resp.status == 200 and "s3cret" not in json.dumps(listing)
    assert {t["name"] for t in listing["data"]} >= {"pets_getPet", "pets_secret"}
    assert [b["name"] for b in listing["brains"]] == ["petbot", "once"]


async def test_client_tools_come_back_to_the_client(setup: Setup) -> None:
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    setup.rounds.texts = [call("pets_getPet", {"path": {"pet_id": 2}}) + "\n" + call("get_weather", {"city": "Oslo"})]
    status, body = await chat(setup, model="petbot", tools=[weather])
    assert status == 200, body
    (tc,) = body["choices"][0]["message"]["tool_calls"]
    assert tc["function"]["name"] == "get_weather" and body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["steps"][0]["tool_calls"][0]["function"]["name"] == "pets_getPet"
    assert len(setup.rounds.bodies) == 1


async def test_server_tools_on_the_served_model(setup: Setup) -> None:
    setup.rounds.texts = [call("pets_listPets", {"query": {"tag": ["dog"]}}), "Dogs."]
    status, body = await chat(setup, model=MODEL, server_tools=["pets_listPets"])
    assert status == 200, body
    assert body["model"] == MODEL
    assert json.loads(body["steps"][1]["results"][0]["content"]) == {"tags": ["dog"]}


@pytest.mark.parametrize(("body", "param"), [
    ({"model": MODEL, "server_tools": ["nope"]}, "server_tools[0]"),
    ({"model": MODEL, "server_tools": ["pets", "pets_nope"]}, "server_tools[1]"),
    ({"model": "petbot", "n": 2}, "n"),
    ({"model": "petbot", "tools": [{"type": "function", "function": {"name": "pets_getPet"}}]},
     "tools[0].function.name"),
    ({"model": "nobrain"}, "model"),
])
async def test_bad_requests_name_the_field(setup: Setup, body: dict[str, Any], param: str) -> None:
    status, answer = await chat(setup, **body)
    assert status in (400, 404) and answer["error"]["param"] == param, answer


# ---------------------------------------------------------------- the plain interface


async def test_plain_text_gets_the_answer_and_run_headers(setup: Setup) -> None:
    setup.rounds.texts = [call("pets_getPet", {"path": {"pet_id": 7}}), "Rex it is."]
    resp = await setup.http.post("/", data=b"What is pet 7?", headers=AUTH)
    assert resp.status == 200 and await resp.text() == "Rex it is."
    assert resp.content_type == "text/plain"
    assert resp.headers["X-Run-Context"] == "1" and float(resp.headers["X-Run-Duration"]) >= 0
    assert (resp.headers["X-Run-Input-Tokens"], resp.headers["X-Run-Output-Tokens"],
            resp.headers["X-Run-Total-Tokens"]) == ("80", "10", "90")
    assert "You help with pets" in setup.rounds.bodies[0]["prompt"]  # the first brain


async def test_plain_multipart_history_roles_and_user(setup: Setup) -> None:
    setup.rounds.texts = ["Your name is Ann."]
    with aiohttp.MultipartWriter("form-data") as mp:
        mp.append("My name is Ann.", {"X-User": "ann"})
        mp.append("Hello Ann.", {"X-Role": "assistant"})
        mp.append("What is my name?")
    resp = await setup.http.post("/?brain=petbot", data=mp, headers=AUTH)
    assert resp.status == 200, await resp.text()
    assert resp.headers["X-Run-Context"] == "3"
    prompt = setup.rounds.bodies[0]["prompt"]
    assert "User: ann." in prompt
    assert prompt.index("My name is Ann.") < prompt.index("<|im_start|>assistant\nHello Ann.") < prompt.index(
        "What is my name?")


async def test_plain_form_and_bad_input(setup: Setup) -> None:
    setup.rounds.texts = ["ok"]
    resp = await setup.http.post("/", data={"q": "hi there"}, headers=AUTH)
    assert resp.status == 200 and "hi there" in setup.rounds.bodies[-1]["prompt"]
    resp = await setup.http.post("/", data=b"\x89PNG...", headers={**AUTH, "Content-Type": "image/png"})
    err = await resp.json()
    assert resp.status == 400 and err["error"]["param"] == "body" and "vision" in err["error"]["message"]
    resp = await setup.http.post("/", data=b"", headers=AUTH)
    assert resp.status == 400 and (await resp.json())["error"]["param"] == "body"
    resp = await setup.http.post("/?brain=ghost", data=b"hi", headers=AUTH)
    assert resp.status == 404 and (await resp.json())["error"]["param"] == "brain"
    resp = await setup.http.post("/", data=b"hi")
    assert resp.status == 401


@pytest.mark.parametrize("content_type,body,param", [
    ("multipart/form-data", b"hello", "Content-Type"),  # no boundary (found by the OpenAPI fuzz: was a 500)
    ("multipart/form-data; boundary=" + "b" * 80, b"hello", "Content-Type"),  # longer than 70
    ("multipart/form-data; boundary=b", b"garbage", "body"),  # never opens with the boundary
    ("multipart/form-data; boundary=b", b"--b\r\nno end of headers", "body"),
    ("multipart/form-data; boundary=b", b"--b\r\nContent-Transfer-Encoding: weird\r\n\r\nx\r\n--b--\r\n", "body"),
])
async def test_an_unreadable_multipart_body_is_a_400_naming_what_is_wrong(setup: Setup, content_type: str,
                                                                            body: bytes, param: str) -> None:
    """The threads read bodies the same way (``read_messages``)."""
    resp = await setup.http.post("/", data=body, headers={**AUTH, "Content-Type": content_type})
    err = (await resp.json())["error"]
    assert resp.status == 400 and err["param"] == param and err["type"] == "invalid_request_error", err
    assert setup.rounds.bodies == []  # the model never ran


async def test_text_beside_a_call_is_part_of_the_answer_streamed_or_not(setup: Setup) -> None:
    texts = ["Let me look. " + call("pets_getPet", {"path": {"pet_id": 7}}), "It is Rex."]
    setup.rounds.texts = list(texts)
    status, body = await chat(setup, model="petbot")
    assert status == 200 and body["choices"][0]["message"]["content"] == "Let me look. It is Rex."
    setup.rounds.texts = list(texts)
    resp = await setup.http.post("/v1/chat/completions", headers=AUTH,
                                 json={"model": "petbot", "messages": ASK, "stream": True})
    chunks = [json.loads(line[6:]) for line in (await resp.text()).splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == \
        "Let me look. It is Rex."


def long_history(turns: int) -> list[dict[str, str]]:
    history = []
    for i in range(turns):
        history += [{"role": "user", "content": f"question {i:03d} " + "q" * 180},
                    {"role": "assistant", "content": f"answer {i:03d} " + "a" * 180}]
    return history + [{"role": "user", "content": "the latest question"}]


async def test_a_brain_drops_the_oldest_turns_to_fit_the_context(setup: Setup) -> None:
    setup.upstream.context_per_slot = 6000  # the stand-in counts a token per character
    setup.rounds.texts = ["ok"]
    status, body = await chat(setup, model="petbot", messages=long_history(30), max_tokens=100)
    assert status == 200, body
    prompt = setup.rounds.bodies[-1]["prompt"]
    assert len(prompt) <= 5900 and "the latest question" in prompt and "You help with pets" in prompt
    assert "question 000" not in prompt and "answer 029" in prompt
    kept = [i for i in range(30) if f"question {i:03d}" in prompt]
    assert kept == list(range(kept[0], 30)) and len(kept) >= 5  # the newest turns, as many as fit
    assert len(prompt) + 2 * 190 > 5900  # one more turn (two messages of 190 characters and more) would not fit


async def test_a_request_without_a_brain_is_never_trimmed(setup: Setup) -> None:
    setup.upstream.context_per_slot = 3000
    setup.rounds.texts = ["ok"]
    status, body = await chat(setup, model=MODEL, server_tools=["pets"], messages=long_history(30), max_tokens=100)
    assert status == 200, body
    assert "question 000" in setup.rounds.bodies[-1]["prompt"]
