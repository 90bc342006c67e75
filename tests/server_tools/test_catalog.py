"""The tool catalog against real sources: the pet service (tests/server_tools/service.py), the MCP test
servers (mcp_server.py, mcp_changing_server.py) over stdio and streamable HTTP, and real files that
change while the catalog watches them."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from oaiproxy.server_tools.catalog import ToolCatalog, read_tools_file
from oaiproxy.settings import ConfigError
from tests.server_tools.service import SPEC, running_service

HERE = Path(__file__).parent
MCP_SERVER = str(HERE / "mcp_server.py")
CHANGING_SERVER = str(HERE / "mcp_changing_server.py")


@pytest.fixture
async def service() -> AsyncIterator[str]:
    async with running_service() as base:
        yield base


def write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def spec_with(*op_ids: str) -> dict[str, Any]:
    """The pet spec reduced to the operations ``op_ids``."""
    paths: dict[str, Any] = {}
    for path, item in SPEC["paths"].items():
        ops = {m: op for m, op in item.items() if isinstance(op, dict) and op.get("operationId") in op_ids}
        if ops:
            paths[path] = {**({"parameters": item["parameters"]} if "parameters" in item else {}), **ops}
    return {**SPEC, "paths": paths}


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold within the time limit")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def opened(path: Path, *, start: bool = False) -> AsyncIterator[ToolCatalog]:
    catalog = await ToolCatalog.open(path)
    try:
        if start:
            await catalog.start()
        yield catalog
    finally:
        await catalog.stop()


def logged(caplog: pytest.LogCaptureFixture, text: str) -> Callable[[], bool]:
    return lambda: any(text in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ opening


async def test_open_loads_openapi_and_mcp_sources(tmp_path: Path, service: str) -> None:
    (tmp_path / "specs").mkdir()
    write(tmp_path / "specs" / "pets.json", json.dumps(SPEC))
    path = write(tmp_path / "tools.yaml", {
        "sources": [
            # relative to the tools file, not to the working directory
            {"type": "openapi", "url": "specs/pets.json", "namespace": "pets", "base_url": service + "/api",
             "include": ["getPet", "addPet"]},
            {"type": "mcp", "namespace": "m", "command": sys.executable, "args": [MCP_SERVER],
             "include": ["add", "greet"]},
        ],
        "brains": {"adder": {"tools": ["m_add"]}, "all": {}},
    })
    async with opened(path) as catalog:
        snap = catalog.snapshot
        assert set(snap.tools) == {"pets_getPet", "pets_addPet", "m_add", "m_greet"}
        assert [t.spec.name for t in snap.tools_for(["pets"])] == ["pets_getPet", "pets_addPet"]
        assert [t.spec.name for t in snap.tools_for(["m_add"])] == ["m_add"]
        assert [t.spec.name for t in snap.tools_for([])] == ["pets_getPet", "pets_addPet", "m_add", "m_greet"]
        assert snap.tools_for(["m_gone"]) == []
        assert (await snap.tools["m_add"].run({"a": 2, "b": 3})).content == "5"
        res = await snap.tools["pets_getPet"].run({"path": {"pet_id": 4}})
        assert json.loads(res.content)["id"] == 4
        assert snap.sources["pets"].origin == str(tmp_path / "specs" / "pets.json")
        assert snap.sources["m"].kind == "mcp" and snap.sources["m"].error is None
        listing = catalog.listing()
        assert listing["object"] == "list" and listing["file"] == str(path)
        assert [d["name"] for d in listing["data"]] == ["pets_getPet", "pets_addPet", "m_add", "m_greet"]
        assert {b["name"]: b["tools"] for b in listing["brains"]} == {
            "adder": ["m_add"], "all": ["pets_getPet", "pets_addPet", "m_add", "m_greet"]}


@pytest.mark.parametrize(("text", "message"), [
    ("sources:\n  - {type: openapi, url: s.json, namespace: 1bad}\n", "sources[0].namespace: String should match"),
    ("sources:\n  - {type: openapi, url: s.json, namespace: ok, bogus: 1}\n", "sources[0].bogus: unknown key"),
    ("bogus: 1\n", "bogus: unknown key"),
    ("sources:\n  - {type: mcp, namespace: m}\n", "sources[0]: give exactly one of 'command'"),
    ("sources:\n  - {type: ftp, namespace: m}\n", "sources[0]: Input tag 'ftp'"),
    ("brains:\n  b: {tools: [nowhere]}\n", "brains.b.tools[0]: 'nowhere' is no source's namespace"),
    ("brains:\n  b: {max_iterations: 0}\n", "brains.b.max_iterations: Input should be greater than or equal to 1"),
    ("sources: [\n", "not valid YAML or JSON"),
    ("- a\n- b\n", "expected a mapping"),
])
def test_a_bad_tools_file_is_a_config_error_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "tools.yaml", text)
    with pytest.raises(ConfigError) as err:
        read_tools_file(path)
    assert str(err.value).startswith(f"--tools: {path}: ")
    assert message in str(err.value)


async def test_open_of_a_missing_or_bad_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        await ToolCatalog.open(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"watch_interval"):
        await ToolCatalog.open(write(tmp_path / "t.json", '{"watch_interval": 0}'))


def test_relative_paths(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", {"sources": [
        {"type": "openapi", "url": "a/spec.yaml", "namespace": "f"},
        {"type": "openapi", "url": "https://example.com/spec.json", "namespace": "u"},
        {"type": "mcp", "namespace": "m", "command": "bin/server", "args": ["data/x.db"]},
    ]})
    file = read_tools_file(path)
    assert [getattr(s, "url", None) for s in file.sources] == [
        str(tmp_path / "a" / "spec.yaml"), "https://example.com/spec.json", None]
    mcp = file.sources[2]
    assert (mcp.command, mcp.args) == ("bin/server", ["data/x.db"])  # type: ignore[union-attr]


async def test_hostile_specs_fail_alone(tmp_path: Path, service: str, caplog: pytest.LogCaptureFixture) -> None:
    schemas = {f"s{i}": {"type": "object", "properties": {"a": {"$ref": f"#/components/schemas/s{i + 1}"},
                                                          "b": {"$ref": f"#/components/schemas/s{i + 1}"}}}
               for i in range(30)}
    schemas["s30"] = {"type": "string"}
    doubling = {"openapi": "3.1.0", "servers": [{"url": "http://x"}], "components": {"schemas": schemas},
                "paths": {"/a": {"post": {"requestBody": {"content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/s0"}}}}}}}}
    (tmp_path / "huge.json").write_text(" " * 10_000_001)
    write(tmp_path / "refs.json", json.dumps(doubling))
    write(tmp_path / "bad.yaml", "openapi: 3.0.0\npaths: {\n")
    write(tmp_path / "good.json", json.dumps(spec_with("getPet")))
    path = write(tmp_path / "tools.yaml", {"sources": [
        {"type": "openapi", "url": "huge.json", "namespace": "huge"},
        {"type": "openapi", "url": "refs.json", "namespace": "refs"},
        {"type": "openapi", "url": "bad.yaml", "namespace": "bad"},
        {"type": "mcp", "namespace": "dead", "command": sys.executable, "args": ["-c", "raise SystemExit(2)"],
         "timeout": 10},
        {"type": "openapi", "url": "good.json", "namespace": "good", "base_url": service},
    ]})
    caplog.set_level(logging.WARNING, "oaiproxy.server_tools")
    async with opened(path) as catalog:
        src = catalog.snapshot.sources
        assert list(catalog.snapshot.tools) == ["good_getPet"]
        assert "source 'huge'" in (src["huge"].error or "") and "larger than" in (src["huge"].error or "")
        assert "source 'refs'" in (src["refs"].error or "") and "schema nodes" in (src["refs"].error or "")
        assert "source 'bad'" in (src["bad"].error or "") and "not valid JSON or YAML" in (src["bad"].error or "")
        assert "source 'dead'" in (src["dead"].error or "")
        for name in ("huge", "refs", "bad", "dead"):
            assert src[name].tools == [] and src[name].loaded_at is None
            assert logged(caplog, f"source {name!r}")()
        assert src["good"].error is None and src["good"].loaded_at is not None
        assert [s["error"] is None for s in catalog.listing()["sources"]] == [False] * 4 + [True]


async def test_a_tool_name_given_twice_is_an_error_of_the_later_source(tmp_path: Path, service: str) -> None:
    def one_op(op_id: str) -> dict[str, Any]:
        return {"openapi": "3.0.0", "paths": {"/pets": {"get": {"operationId": op_id}}}}

    write(tmp_path / "a.json", json.dumps(one_op("b_c")))
    write(tmp_path / "ab.json", json.dumps(one_op("c")))
    path = write(tmp_path / "tools.yaml", {"sources": [
        {"type": "openapi", "url": "a.json", "namespace": "a", "base_url": service},
        {"type": "openapi", "url": "ab.json", "namespace": "a_b", "base_url": service},
    ]})
    async with opened(path) as catalog:
        snap = catalog.snapshot
        assert list(snap.tools) == ["a_b_c"] and snap.tools["a_b_c"].source == "a"
        assert snap.sources["a"].error is None
        error = snap.sources["a_b"].error or ""
        assert "source 'a_b'" in error and "'a_b_c' is also a tool of source 'a'" in error
        assert snap.sources["a_b"].tools == [] and snap.tools_for(["a_b"]) == []
        assert error in await catalog.reload()


async def test_the_listing_never_shows_a_header_or_env_value(tmp_path: Path, service: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETS_KEY", "env-s3cret-1")
    write(tmp_path / "pets.json", json.dumps(spec_with("getPet")))
    path = write(tmp_path / "tools.yaml", {"sources": [
        {"type": "openapi", "url": "pets.json", "namespace": "pets", "base_url": service,
         "headers": {"X-Api-Key": {"value": "literal-s3cret-2"}, "X-Env": {"from_env": "PETS_KEY"}}},
        {"type": "mcp", "namespace": "m", "command": sys.executable, "args": [MCP_SERVER], "include": ["greet"],
         "env": {"GREETING": {"value": "literal-s3cret-3"}}},
        # a source that fails keeps its secrets too
        {"type": "openapi", "url": "http://user:pw-s3cret-4@127.0.0.1:9/spec.json?token=q-s3cret-5",
         "namespace": "down", "timeout": 2, "headers": {"X-Key": {"value": "literal-s3cret-6"}}},
    ]})
    async with opened(path) as catalog:
        greet = catalog.snapshot.tools["m_greet"]
        assert (await greet.run({"name": "Ann"})).content == "literal-s3cret-3, Ann!"  # the value is used
        listing = catalog.listing()
        text = json.dumps(listing)
        assert "s3cret" not in text, text
        pets = next(s for s in listing["sources"] if s["name"] == "pets")
        assert pets["details"]["headers"] == {"X-Api-Key": "(set)", "X-Env": "from_env PETS_KEY"}
        down = next(s for s in listing["sources"] if s["name"] == "down")
        assert down["error"] and down["origin"] == "http://127.0.0.1:9/spec.json"


# ------------------------------------------------------------------ watching files


async def test_a_changed_spec_file_is_reloaded_and_a_broken_one_keeps_the_old_tools(
        tmp_path: Path, service: str, caplog: pytest.LogCaptureFixture) -> None:
    spec = write(tmp_path / "pets.json", json.dumps(spec_with("getPet")))
    path = write(tmp_path / "tools.yaml", {"watch_interval": 0.1, "sources": [
        {"type": "openapi", "url": "pets.json", "namespace": "pets", "base_url": service + "/api"}]})
    async with opened(path, start=True) as catalog:
        assert list(catalog.snapshot.tools) == ["pets_getPet"]
        first = catalog.snapshot.sources["pets"].loaded_at
        write(spec, json.dumps(spec_with("getPet", "addPet")))
        await until(lambda: "pets_addPet" in catalog.snapshot.tools)
        res = await catalog.snapshot.tools["pets_addPet"].run({"body": {"name": "Tom"}})
        assert json.loads(res.content) == {"added": {"name": "Tom"}}
        loaded_at = catalog.snapshot.sources["pets"].loaded_at
        assert loaded_at is not None and first is not None and loaded_at > first

        caplog.set_level(logging.WARNING, "oaiproxy.server_tools")
        write(spec, "{not json")
        await until(lambda: catalog.snapshot.sources["pets"].error is not None)
        status = catalog.snapshot.sources["pets"]
        assert "source 'pets'" in (status.error or "") and "not valid JSON or YAML" in (status.error or "")
        assert status.tools == ["pets_getPet", "pets_addPet"] and status.loaded_at == loaded_at
        assert set(catalog.snapshot.tools) == {"pets_getPet", "pets_addPet"}
        assert logged(caplog, "earlier tools are kept")()

        write(spec, json.dumps(spec_with("addPet")))  # fixed: the error goes, the new tools come
        await until(lambda: catalog.snapshot.sources["pets"].error is None)
        assert list(catalog.snapshot.tools) == ["pets_addPet"]


async def test_a_changed_tools_file_is_reloaded_and_a_broken_one_keeps_the_old_snapshot(
        tmp_path: Path, service: str, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "pets.json", json.dumps(spec_with("getPet")))
    data: dict[str, Any] = {"watch_interval": 0.1, "sources": [
        {"type": "openapi", "url": "pets.json", "namespace": "pets", "base_url": service + "/api"}]}
    path = write(tmp_path / "tools.yaml", data)
    async with opened(path, start=True) as catalog:
        assert dict(catalog.snapshot.brains) == {}
        write(path, {**data, "brains": {"vet": {"description": "knows pets", "tools": ["pets"]}}})
        await until(lambda: "vet" in catalog.snapshot.brains)
        snap = catalog.snapshot
        assert snap.brains["vet"].description == "knows pets"
        assert [t.spec.name for t in snap.tools_for(snap.brains["vet"].tools)] == ["pets_getPet"]

        caplog.set_level(logging.WARNING, "oaiproxy.server_tools")
        write(path, {**data, "brains": {"vet": {"tools": ["nowhere"]}}})
        await until(logged(caplog, "brains.vet.tools[0]"))
        await asyncio.sleep(0.3)
        assert catalog.snapshot is snap  # the whole old snapshot, untouched
        assert logged(caplog, "the tools loaded before are kept")()
        assert sum("brains.vet.tools[0]" in r.getMessage() for r in caplog.records) == 1  # once, not per poll
        assert (await catalog.reload())[0].startswith(f"--tools: {path}: brains.vet.tools[0]")

        write(path, {**data, "sources": [], "brains": {}})  # valid again: sources may go, too
        await until(lambda: not catalog.snapshot.sources)
        assert dict(catalog.snapshot.tools) == {} and catalog.listing()["data"] == []


@asynccontextmanager
async def changing_spec_server() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A server of a spec the test may change; yields its URL and the spec it serves."""
    served: dict[str, Any] = {"spec": spec_with("getPet")}

    async def spec(request: web.Request) -> web.Response:
        return web.json_response(served["spec"])

    app = web.Application()
    app.router.add_get("/spec.json", spec)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/spec.json", served
    finally:
        await runner.cleanup()


async def test_a_spec_url_is_refetched_every_refresh_interval(tmp_path: Path, service: str) -> None:
    async with changing_spec_server() as (url, served):
        path = write(tmp_path / "tools.yaml", {"watch_interval": 0.1, "sources": [
            {"type": "openapi", "url": url, "namespace": "pets", "base_url": service + "/api",
             "refresh_interval": 1}]})
        async with opened(path, start=True) as catalog:
            assert list(catalog.snapshot.tools) == ["pets_getPet"]
            served["spec"] = spec_with("getPet", "listPets")
            await until(lambda: "pets_listPets" in catalog.snapshot.tools, timeout=4)
            served["spec"] = {"openapi": "2"}
            await until(lambda: catalog.snapshot.sources["pets"].error is not None, timeout=4)
            assert set(catalog.snapshot.tools) == {"pets_getPet", "pets_listPets"}


# ------------------------------------------------------------------ MCP tool-list changes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_http(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, CHANGING_SERVER, "http", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the MCP test server exited") from None
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the MCP test server did not start")


@pytest.fixture
def changing_http() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    proc = _start_http(port)
    try:
        yield f"http://127.0.0.1:{port}/mcp", proc
    finally:
        proc.terminate()
        proc.wait(10)


async def test_an_mcp_server_announcing_a_change_over_http_is_relisted(
        tmp_path: Path, changing_http: tuple[str, subprocess.Popen[bytes]],
        caplog: pytest.LogCaptureFixture) -> None:
    """The call to grow goes over one session; the announcement reaches the catalog's listening session.
    No refresh_interval: only the announcement can bring the new tool."""
    url, _ = changing_http
    path = write(tmp_path / "tools.yaml", {"sources": [{"type": "mcp", "namespace": "c", "url": url,
                                                         "timeout": 10}]})
    caplog.set_level(logging.INFO, "oaiproxy.server_tools")
    async with opened(path, start=True) as catalog:
        assert list(catalog.snapshot.tools) == ["c_grow"]
        await until(logged(caplog, "source 'c': listening for tool-list changes"))
        assert (await catalog.snapshot.tools["c_grow"].run({})).content == "grown"
        await until(lambda: "c_extra" in catalog.snapshot.tools)
        assert logged(caplog, "source 'c' announced a tool-list change")()
        assert (await catalog.snapshot.tools["c_extra"].run({"text": "hi"})).content == "hi"


async def test_an_mcp_stdio_server_announcing_a_change_is_relisted(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "marker"
    path = write(tmp_path / "tools.yaml", {"sources": [
        {"type": "mcp", "namespace": "s", "command": sys.executable, "args": [CHANGING_SERVER, "stdio", str(marker)],
         "timeout": 10}]})
    caplog.set_level(logging.INFO, "oaiproxy.server_tools")
    async with opened(path, start=True) as catalog:
        assert list(catalog.snapshot.tools) == ["s_grow"]
        await until(logged(caplog, "source 's': listening for tool-list changes"))
        marker.touch()
        await until(lambda: "s_extra" in catalog.snapshot.tools)
        assert logged(caplog, "source 's' announced a tool-list change")()


async def test_an_mcp_server_without_listen_is_relisted_every_refresh_interval(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "marker"
    path = write(tmp_path / "tools.yaml", {"watch_interval": 0.1, "sources": [
        {"type": "mcp", "namespace": "q", "command": sys.executable, "args": [CHANGING_SERVER, "quiet", str(marker)],
         "timeout": 10, "refresh_interval": 1}]})
    caplog.set_level(logging.INFO, "oaiproxy.server_tools")
    async with opened(path, start=True) as catalog:
        assert list(catalog.snapshot.tools) == ["q_grow"]
        await until(logged(caplog, "source 'q' does not serve subscriptions/listen"))
        first = catalog.snapshot.sources["q"].loaded_at
        marker.touch()
        await until(lambda: "q_extra" in catalog.snapshot.tools)
        loaded_at = catalog.snapshot.sources["q"].loaded_at
        assert first is not None and loaded_at is not None and loaded_at - first >= 0.9
        assert not logged(caplog, "announced a tool-list change")()


async def test_a_lost_mcp_listener_retries_and_relists(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The server dies and comes back with a tool made meanwhile: the listener reconnects (with backoff)
    and the source is re-listed, by the reconnect's own re-list or by the announcement, whichever the
    timing gives; stop() then ends promptly."""
    port = _free_port()
    proc = _start_http(port)
    path = write(tmp_path / "tools.yaml", {"sources": [
        {"type": "mcp", "namespace": "c", "url": f"http://127.0.0.1:{port}/mcp", "timeout": 5}]})
    caplog.set_level(logging.INFO, "oaiproxy.server_tools")
    try:
        async with opened(path, start=True) as catalog:
            await until(logged(caplog, "source 'c': listening for tool-list changes"))
            proc.kill()
            proc.wait(10)
            await until(logged(caplog, "tool-list listener lost"))
            proc = _start_http(port)
            await catalog.snapshot.tools["c_grow"].run({})
            await until(lambda: "c_extra" in catalog.snapshot.tools, timeout=8)
            started = time.monotonic()
        assert time.monotonic() - started < 5  # stop() does not hang on the listener
    finally:
        proc.terminate()
        proc.wait(10)


async def test_an_mcp_server_down_at_startup_is_picked_up_when_it_comes_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()
    path = write(tmp_path / "tools.yaml", {"sources": [
        {"type": "mcp", "namespace": "c", "url": f"http://127.0.0.1:{port}/mcp", "timeout": 5}]})
    caplog.set_level(logging.INFO, "oaiproxy.server_tools")
    proc = None
    try:
        async with opened(path, start=True) as catalog:
            assert "source 'c'" in (catalog.snapshot.sources["c"].error or "") and not catalog.snapshot.tools
            await until(logged(caplog, "tool-list listener lost"))
            proc = _start_http(port)
            await until(lambda: "c_grow" in catalog.snapshot.tools, timeout=6)
            assert catalog.snapshot.sources["c"].error is None
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
