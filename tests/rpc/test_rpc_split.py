"""One model split over two ``ggml-rpc-server`` processes (llama.cpp's RPC backend) behind ``--rpc``.

The machine stands in for three: two local RPC servers take the model's layers, the llama-server the proxy
spawns drives them, and the answer is still a tool call that validates.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from pathlib import Path

import jsonschema
import pytest

from oaiproxy.runtime.rpc import find_rpc_server_binary
from oaiproxy.settings import ConfigError, build_settings
from tests._processes import Child, ProxyProcess, free_port

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"],
    "additionalProperties": False}}}


class RpcServer(Child):
    what = "ggml-rpc-server"

    def __init__(self) -> None:
        port = free_port()
        super().__init__([str(find_rpc_server_binary()), "-H", "127.0.0.1", "-p", str(port), "-t", "1"],
                         port=port, keep_log=True, new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"ggml-rpc-server on {port} never listened:\n{self.log()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def test_rpc_addresses_are_checked_once_in_the_settings() -> None:
    assert build_settings({"rpc": ["10.0.0.2:50052,10.0.0.3:50052"]}).rpc == ["10.0.0.2:50052", "10.0.0.3:50052"]
    for bad in ("10.0.0.2", "10.0.0.2:99999", ":50052"):
        with pytest.raises(ConfigError, match=f"^--rpc: .*'{bad}' is not host:port"):
            build_settings({"rpc": [bad]})
    with pytest.raises(ConfigError, match="--rpc splits the llama-server oaiproxy spawns"):
        build_settings({"rpc": ["10.0.0.2:50052"], "endpoint": "http://127.0.0.1:9"})


@pytest.mark.integration
def test_a_model_split_over_two_rpc_servers_still_answers_with_a_valid_call(default_model_path: Path) -> None:
    with RpcServer() as first, RpcServer() as second:
        proxy = ProxyProcess(["--rpc", f"{first.address},{second.address}", "--threads", "1", "--parallel", "1",
                              "--ctx-size", "2048", "--log-level", "debug", "--", "-lv", "4"], timeout=300)
        try:
            with urllib.request.urlopen(proxy.base_url + "/models", timeout=30) as r:
                model = json.loads(r.read())["data"][0]["id"]
            body = {"model": model, "max_tokens": 60, "temperature": 0, "tools": [WEATHER], "tool_choice": "required",
                    "messages": [{"role": "user", "content": "What is the weather in Paris?"}]}
            req = urllib.request.Request(proxy.base_url + "/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=300) as r:
                answer = json.loads(r.read())
            log = proxy.log()
        finally:
            proxy.stop()
        calls = answer["choices"][0]["message"]["tool_calls"]
        assert calls and all(c["function"]["name"] == "get_weather" for c in calls), answer
        for call in calls:
            jsonschema.validate(json.loads(call["function"]["arguments"]), WEATHER["function"]["parameters"])
        # llama-server (its log is in the proxy's at debug level; -lv 4 prints where each buffer went) put
        # part of the model on each RPC server
        for rpc in (first, second):
            assert re.search(rf"RPC\d+\[{re.escape(rpc.address)}\] model buffer size = *[1-9]", log), log[-6000:]
