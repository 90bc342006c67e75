"""Model load/unload on demand with two model aliases, on real llama-servers: the default GGUF declared twice
(``gemma-a``, ``gemma-b``) with ``--max-loaded 1``. Nothing is loaded at start; a request to one alias loads
it (and a required tool call through it validates); a request to the other unloads the first (its
llama-server process is gone) and loads the other; the first again is loaded anew. ``/v1/models`` lists both
all along; an unknown model is a 404 naming them.

Run under ``flock /tmp/oaiproxy-model-tests.lock``: the model is loaded three times."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._processes import ProxyProcess, pid_alive

pytestmark = pytest.mark.integration

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                         "parameters": {"type": "object", "additionalProperties": False,
                                                        "properties": {"city": {"type": "string", "maxLength": 24}},
                                                        "required": ["city"]}}}


def request(proxy: ProxyProcess, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(proxy.url + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=180) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def tool_call(proxy: ProxyProcess, model: str) -> Any:
    status, body = request(proxy, "/v1/chat/completions", {
        "model": model, "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [TOOL], "tool_choice": "required", "max_tokens": 96, "temperature": 0})
    assert status == 200, body
    assert body["model"] == model
    assert body["choices"][0]["finish_reason"] == "tool_calls", body["choices"]
    call = body["choices"][0]["message"]["tool_calls"][0]["function"]
    assert call["name"] == "get_weather" and isinstance(json.loads(call["arguments"])["city"], str)
    return body


def models(proxy: ProxyProcess) -> dict[str, Any]:
    status, body = request(proxy, "/health")
    assert status == 200, body
    return {m["id"]: m for m in body["models"]}


@pytest.fixture(scope="module")
def two_aliases(default_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    cfg = tmp_path_factory.mktemp("models") / "models.yaml"
    cfg.write_text(yaml.safe_dump({"max-loaded": 1, "model": [
        {"path": str(default_model_path), "alias": "gemma-a"},
        {"path": str(default_model_path), "alias": "gemma-b", "ctx-size": 1024}]}))
    proxy = ProxyProcess(["--config", str(cfg), "--parallel", "1", "--threads", "1", "--ctx-size", "2048",
                          "--default-max-tokens", "40"])
    yield proxy
    proxy.stop()


def test_models_load_and_unload_on_demand(two_aliases: ProxyProcess) -> None:
    proxy = two_aliases
    status, listing = request(proxy, "/v1/models")
    assert status == 200 and [m["id"] for m in listing["data"]] == ["gemma-a", "gemma-b"]
    assert {m: v["state"] for m, v in models(proxy).items()} == {"gemma-a": "unloaded", "gemma-b": "unloaded"}
    assert proxy.children() == []  # nothing loaded before the first request

    tool_call(proxy, "gemma-a")  # loads gemma-a
    now = models(proxy)
    assert (now["gemma-a"]["state"], now["gemma-b"]["state"]) == ("loaded", "unloaded")
    first_a = now["gemma-a"]["pid"]
    assert proxy.children() == [first_a]

    tool_call(proxy, "gemma-b")  # unloads gemma-a, loads gemma-b
    now = models(proxy)
    assert (now["gemma-a"]["state"], now["gemma-b"]["state"]) == ("unloaded", "loaded")
    assert not pid_alive(first_a)  # its llama-server is gone
    b = now["gemma-b"]["pid"]
    assert proxy.children() == [b] and b != first_a
    assert now["gemma-a"]["unloads"] == 1

    tool_call(proxy, "gemma-a")  # loaded again, in a new llama-server
    now = models(proxy)
    assert (now["gemma-a"]["state"], now["gemma-b"]["state"]) == ("loaded", "unloaded")
    assert not pid_alive(b)
    assert now["gemma-a"]["loads"] == 2 and proxy.children() == [now["gemma-a"]["pid"]] != [first_a]

    status, listing = request(proxy, "/v1/models")  # both listed, loaded or not
    assert status == 200 and [m["id"] for m in listing["data"]] == ["gemma-a", "gemma-b"]


def test_an_unknown_model_is_a_404_naming_both(two_aliases: ProxyProcess) -> None:
    loaded_before = {m: v["state"] for m, v in models(two_aliases).items()}
    status, body = request(two_aliases, "/v1/chat/completions", {
        "model": "gemma-c", "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 404
    assert body["error"] == {"message": "model 'gemma-c' does not exist; this server serves 'gemma-a', 'gemma-b'",
                             "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
    status, body = request(two_aliases, "/v1/messages", {
        "model": "gemma-c", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]})
    assert status == 404 and body["error"]["type"] == "not_found_error"
    assert "'gemma-a', 'gemma-b'" in body["error"]["message"]
    assert {m: v["state"] for m, v in models(two_aliases).items()} == loaded_before  # nothing loaded or unloaded
