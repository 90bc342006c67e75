"""Server tools end to end: the real proxy process (``--tools``) on the real llama-server and default model,
a real HTTP service with its OpenAPI spec, and a real MCP server over stdio.

The 270M base model does not choose tools on its own, so the brains here say ``tool_choice: required``
and name one tool each: the grammar makes its call valid, the proxy runs it against the real service,
and the round limit (1) makes the model answer after reading the result.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openai import OpenAI

from tests._processes import LlamaServer, ProxyProcess
from tests.api.conftest import http
from tests.server_tools.service import SPEC, running_service

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
ASK = [{"role": "user", "content": "Look it up."}]


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    """The pet service, in a thread of its own (the proxy under test is another process)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    base: list[str] = []
    stop = asyncio.Event()

    async def main() -> None:
        async with running_service() as url:
            base.append(url)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the pet service did not start"
    yield base[0]
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)


def brain(tool: str, **extra: Any) -> dict[str, Any]:
    return {"system_prompt": "You answer questions with the tools. Today is {{ date }}.", "tools": [tool],
            "tool_choice": "required", "max_iterations": 1, "max_tokens": 100, **extra}


@pytest.fixture(scope="module")
def tools_dir(tmp_path_factory: pytest.TempPathFactory, service: str) -> Path:
    folder = tmp_path_factory.mktemp("tools")
    (folder / "pets.json").write_text(json.dumps(SPEC))
    (folder / "hostile.json").write_text(json.dumps({"openapi": "3.0.0", "paths": {"/x": {"get": {
        "operationId": "x", "parameters": [{"$ref": "#/components/parameters/loop"}]}}},
        "components": {"parameters": {"loop": {"$ref": "#/components/parameters/loop"}}}}))
    (folder / "tools.yaml").write_text(json.dumps({
        "watch_interval": 0.2,
        "sources": [
            {"type": "openapi", "url": "pets.json", "namespace": "pets", "base_url": service + "/api", "timeout": 1},
            {"type": "openapi", "url": "hostile.json", "namespace": "hostile"},
            {"type": "mcp", "namespace": "m", "command": sys.executable, "args": [str(HERE / "mcp_server.py")]},
        ],
        "brains": {"lookup": brain("pets_getPet"), "adder": brain("m_add"), "failing": brain("pets_fail"),
                   "slow": brain("pets_slow")},
    }))
    return folder


@pytest.fixture(scope="module")
def proxy(upstream: LlamaServer, tools_dir: Path) -> Iterator[ProxyProcess]:
    p = ProxyProcess(["--endpoint", upstream.url, "--tools", str(tools_dir / "tools.yaml")])
    yield p
    p.stop()


@pytest.fixture(scope="module")
def sdk(proxy: ProxyProcess) -> OpenAI:
    return OpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0, timeout=120)


def tool_schema(proxy: ProxyProcess, name: str) -> Any:
    status, _, raw = http("GET", proxy.base_url + "/tools")
    assert status == 200
    return next(t["parameters"] for t in json.loads(raw)["data"] if t["name"] == name)


def post_chat(proxy: ProxyProcess, **body: Any) -> dict[str, Any]:
    status, _, raw = http("POST", proxy.base_url + "/chat/completions",
                          {"messages": ASK, "max_tokens": 100, "temperature": 0, **body}, timeout=120)
    answer = json.loads(raw)
    assert status == 200, answer
    return answer  # type: ignore[no-any-return]


def test_brain_calls_the_real_service_and_answers(proxy: ProxyProcess) -> None:
    answer = post_chat(proxy, model="lookup")
    assert len(answer.get("steps") or []) == 2, json.dumps(answer)
    calls, results = answer["steps"]
    (tc,) = calls["tool_calls"]
    assert tc["function"]["name"] == "pets_getPet"
    args = json.loads(tc["function"]["arguments"])
    jsonschema.validate(args, tool_schema(proxy, "pets_getPet"))  # the grammar's promise, on the real model
    (result,) = results["results"]
    pet_id = args["path"]["pet_id"]
    if pet_id >= 0:  # the service's own answer for that id
        assert not result["is_error"] and json.loads(result["content"])["id"] == pet_id
    else:
        assert result["is_error"] and "400" in result["content"]
    # one round of calls (the limit), then the model answered without tools (what it says is the 270M base
    # model's choice: since the generic prompt's new examples it says nothing here, content null, at temperature 0)
    assert answer["choices"][0]["finish_reason"] in ("stop", "length")
    assert answer["choices"][0]["message"]["tool_calls"] is None
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["model"] == "lookup"


def test_brain_stream_through_the_openai_sdk(sdk: OpenAI) -> None:
    stream = sdk.chat.completions.create(model="adder", messages=ASK, max_tokens=100, temperature=0,  # type: ignore[arg-type]
                                         stream=True)
    steps, text, finish = [], "", None
    for chunk in stream:
        extra = chunk.model_extra or {}
        if extra.get("step"):
            steps.append(extra["step"])
        for choice in chunk.choices:
            text += choice.delta.content or ""
            assert not choice.delta.tool_calls  # server calls never reach the client as its own
            finish = choice.finish_reason or finish
    assert [s["type"] for s in steps] == ["tool_calls", "tool_results"]
    # the model may call the adder more than once in its one round: every call is answered by the real MCP server
    calls, results = steps[0]["tool_calls"], steps[1]["results"]
    assert len(results) == len(calls) >= 1
    for call, result in zip(calls, results, strict=True):
        args = json.loads(call["function"]["arguments"])
        assert not result["is_error"] and result["content"] == str(args["a"] + args["b"])
    assert finish in ("stop", "length")


@pytest.mark.parametrize(("model", "says"), [("failing", "database is down"), ("slow", "timeout")])
def test_failing_and_slow_services_are_tool_errors(proxy: ProxyProcess, model: str, says: str) -> None:
    start = time.monotonic()
    answer = post_chat(proxy, model=model)
    (result,) = answer["steps"][1]["results"]
    assert result["is_error"] and says in result["content"]
    if model == "slow":
        assert result["duration_ms"] < 4000  # the source's 1 s timeout, not the service's 5 s
    assert time.monotonic() - start < 60


def test_plain_interface_text_and_multipart(proxy: ProxyProcess) -> None:
    status, headers, raw = http("POST", proxy.url + "/?brain=lookup", b"What is pet 3?",
                                {"Content-Type": "text/plain"}, timeout=120)
    assert status == 200, raw
    assert headers["Content-Type"].startswith("text/plain")
    assert headers["X-Run-Context"] == "1"
    tokens = [int(headers[f"X-Run-{k}-Tokens"]) for k in ("Input", "Output", "Total")]
    assert tokens[0] > 0 and tokens[2] == tokens[0] + tokens[1]
    boundary = "b0undary"
    parts = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"_\"\r\n{h}\r\n{text}\r\n"
                    for h, text in [("X-User: ann\r\n", "My name is Ann."), ("", "What is pet 4?")])
    body = (parts + f"--{boundary}--\r\n").encode()
    status, headers, raw = http("POST", proxy.url + "/?brain=lookup", body,
                                {"Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=120)
    assert status == 200, raw
    assert headers["X-Run-Context"] == "2"


def test_listing_shows_the_hostile_spec_error_and_reloads_on_change(proxy: ProxyProcess, tools_dir: Path) -> None:
    status, _, raw = http("GET", proxy.base_url + "/tools")
    listing = json.loads(raw)
    by_name = {s["name"]: s for s in listing["sources"]}
    assert by_name["hostile"]["error"] and "hostile" in by_name["hostile"]["error"]
    assert not by_name["pets"]["error"] and not by_name["m"]["error"]
    assert "m_add" in {t["name"] for t in listing["data"]}
    spec = json.loads(json.dumps(SPEC))
    spec["paths"]["/pets/{pet_id}/toys"] = {"get": {"operationId": "listToys", "parameters": [
        {"name": "pet_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "responses": {"200": {"description": "toys"}}}}
    (tools_dir / "pets.json").write_text(json.dumps(spec))
    deadline = time.monotonic() + 20
    names: set[str] = set()
    while time.monotonic() < deadline:
        names = {t["name"] for t in json.loads(http("GET", proxy.base_url + "/tools")[2])["data"]}
        if "pets_listToys" in names:
            break
        time.sleep(0.3)
    assert "pets_listToys" in names and "pets_getPet" in names
    (tools_dir / "pets.json").write_text("{not json")  # a broken spec keeps the tools loaded before
    time.sleep(1.5)
    listing = json.loads(http("GET", proxy.base_url + "/tools")[2])
    assert "pets_listToys" in {t["name"] for t in listing["data"]}
    assert next(s for s in listing["sources"] if s["name"] == "pets")["error"]
