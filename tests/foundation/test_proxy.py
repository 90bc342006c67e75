"""The README's serve command for real: the proxy spawns llama-server on the default model."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests._processes import ProxyProcess, pid_alive

pytestmark = pytest.mark.integration  # every test here runs the real proxy and llama-server


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post(url: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_reports_proxy_and_upstream(proxy: ProxyProcess) -> None:
    status, body = get(proxy.url + "/health")
    assert status == 200
    assert body["status"] == "ok"
    assert body["upstream"]["managed"] is True and body["upstream"]["state"] == "ready"
    assert body["model"] == "gemma-3-270m-q4_k_m"


def test_models_lists_the_alias(proxy: ProxyProcess) -> None:
    status, body = get(proxy.base_url + "/models")
    assert status == 200 and body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["gemma-3-270m-q4_k_m"]
    status, body = get(proxy.base_url + "/models/gemma-3-270m-q4_k_m")
    assert status == 200 and body["id"] == "gemma-3-270m-q4_k_m"
    status, body = get(proxy.base_url + "/models/gpt-4o")
    assert status == 404 and body["error"]["code"] == "model_not_found"


def test_plain_chat_completion(proxy: ProxyProcess) -> None:
    status, body = post(proxy.base_url + "/chat/completions", {
        "model": "gemma-3-270m-q4_k_m",
        "messages": [{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 24, "temperature": 0, "seed": 1,
    })
    assert status == 200, body
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "gemma-3-270m-q4_k_m"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"].strip()
    assert "User:" not in choice["message"]["content"]  # the default template's stops hold
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 10 and 0 < usage["completion_tokens"] <= 24
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_errors_are_openai_json(proxy: ProxyProcess) -> None:
    status, body = post(proxy.base_url + "/chat/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == "body"
    status, body = post(proxy.base_url + "/chat/completions", {"messages": [{"role": "user", "content": 5}]})
    assert status == 400 and body["error"]["param"].startswith("messages[0].content")
    status, body = post(proxy.base_url + "/chat/completions", {"messages": []})
    assert status == 400 and body["error"]["param"] == "messages"
    status, body = post(proxy.base_url + "/chat/completions",
                        {"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"})
    assert status == 400 and body["error"]["param"] == "temperature"
    status, body = get(proxy.base_url + "/nope")
    assert status == 404 and "unknown route" in body["error"]["message"]


def test_endpoint_mode(endpoint_proxy: ProxyProcess, upstream) -> None:
    status, body = get(endpoint_proxy.url + "/health")
    assert status == 200 and body["upstream"]["managed"] is False and body["upstream"]["url"] == upstream.url
    status, body = post(endpoint_proxy.base_url + "/chat/completions", {
        "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8, "temperature": 0})
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] is not None
    # the running server's model, read from the GGUF it names: no chat template, so the default one
    assert body["model"] == "gemma-3-270m-q4_k_m"
    assert body["usage"]["prompt_tokens"] > 0


def test_no_orphan_after_sigkill(default_model_path) -> None:
    p = ProxyProcess(["--parallel", "1", "--ctx-size", "1024"])
    try:
        children = p.children()
        assert len(children) == 1, children
        server_pid = children[0]
        assert pid_alive(server_pid)
        os.kill(p.proc.pid, signal.SIGKILL)
        p.proc.wait(10)
        deadline = time.monotonic() + 15
        while pid_alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(server_pid), "llama-server outlived a SIGKILLed proxy"
    finally:
        p.stop()


def test_sigterm_stops_llama_server(default_model_path) -> None:
    p = ProxyProcess(["--parallel", "1", "--ctx-size", "1024"])
    server_pid = p.children()[0]
    assert p.stop() == 0
    assert not pid_alive(server_pid)
