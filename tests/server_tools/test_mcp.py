"""MCP sources against a real MCP server (tests/server_tools/mcp_server.py) over stdio and streamable HTTP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oaiproxy.server_tools.base import SourceError
from oaiproxy.server_tools.config import HeaderValue, MCPSource
from oaiproxy.server_tools.mcp_source import load_mcp

SERVER = str(Path(__file__).with_name("mcp_server.py"))


def stdio_source(**kw: object) -> MCPSource:
    return MCPSource(namespace="calc", command=sys.executable, args=[SERVER], **kw)  # type: ignore[arg-type]


async def test_stdio_tools_and_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_GREETING", "Ahoy")
    src = await load_mcp(stdio_source(env={"GREETING": HeaderValue(from_env="TEST_GREETING")}, timeout=10,
                                      exclude=["hang"]))
    tools = {t.spec.name: t for t in src.tools}
    assert set(tools) == {"calc_add", "calc_greet", "calc_refuse", "calc_crash"}
    params = tools["calc_add"].spec.parameters
    assert params["properties"]["a"]["type"] == "integer" and sorted(params["required"]) == ["a", "b"]
    assert tools["calc_add"].spec.description == "Add two integers."
    res = await tools["calc_add"].run({"a": 2, "b": 40})
    assert (res.content, res.is_error) == ("42", False)
    assert (await tools["calc_greet"].run({"name": "Ann"})).content == "Ahoy, Ann!"
    res = await tools["calc_refuse"].run({})
    assert res.is_error and "refused on purpose" in res.content
    res = await tools["calc_crash"].run({})  # the process dies mid-call: an error, not a hang
    assert res.is_error
    assert "Ahoy" not in repr(src.details)


async def test_a_hanging_tool_times_out() -> None:
    src = await load_mcp(stdio_source(include=["hang"], timeout=2))
    started = asyncio.get_running_loop().time()
    res = await src.tools[0].run({})
    assert res.is_error and "timeout" in res.content
    assert asyncio.get_running_loop().time() - started < 6  # the timeout, then the SDK ends the process


async def test_a_server_that_does_not_start_is_a_load_error() -> None:
    with pytest.raises(SourceError, match="source 'calc'"):
        await load_mcp(MCPSource(namespace="calc", command=sys.executable, args=["-c", "import sys; sys.exit(2)"],
                                 timeout=10))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def http_server() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, SERVER, "http", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("the MCP test server exited") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_streamable_http_tools_and_calls(http_server: str) -> None:
    src = await load_mcp(MCPSource(namespace="web", url=http_server, timeout=10,
                                   headers={"X-Token": HeaderValue(value="tok")}, include=["add", "refuse"]))
    assert sorted(t.spec.name for t in src.tools) == ["web_add", "web_refuse"]
    add = next(t for t in src.tools if t.spec.name == "web_add")
    assert (await add.run({"a": 1, "b": 2})).content == "3"
    assert src.details["headers"] == {"X-Token": "(set)"}
