"""OpenAPI sources against a real aiohttp service started here: specs to tools, calls to the service."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from oaiproxy.conversation.checks import check_schema_for
from oaiproxy.server_tools.base import SourceError
from oaiproxy.server_tools.config import HeaderValue, OpenAPISource
from oaiproxy.server_tools.openapi import LoadedSource, load_openapi
from tests.server_tools.service import SPEC, running_service


@pytest.fixture
async def service() -> AsyncIterator[str]:
    async with running_service() as base:
        yield base


def write_spec(tmp_path: Path, spec: Any, name: str = "spec.json") -> str:
    path = tmp_path / name
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return str(path)


async def load(tmp_path: Path, base: str, **kw: Any) -> LoadedSource:
    cfg = OpenAPISource(url=write_spec(tmp_path, SPEC), namespace="pets", base_url=base + "/api", **kw)
    return await load_openapi(cfg)


def tool(src: LoadedSource, name: str) -> Any:
    return next(t for t in src.tools if t.spec.name == name)


async def test_operations_become_tools_with_grouped_arguments(tmp_path: Path, service: str) -> None:
    src = await load(tmp_path, service)
    assert {t.spec.name for t in src.tools} == {
        "pets_getPet", "pets_addPet", "pets_listPets", "pets_fail", "pets_slow", "pets_huge", "pets_away",
        "pets_home", "pets_secret"}
    assert "upload" in src.skipped and "image/png" in src.skipped["upload"]
    get_pet = tool(src, "pets_getPet").spec.parameters
    assert get_pet["required"] == ["path"]
    assert get_pet["properties"]["path"]["properties"]["pet_id"] == {"type": "integer"}
    assert set(get_pet["properties"]) == {"path", "query", "header"}
    body = tool(src, "pets_addPet").spec.parameters["properties"]["body"]
    assert body["properties"]["tag"]["type"] == ["string", "null"]  # nullable
    assert "example" not in body["properties"]["name"]
    # the recursive $ref is expanded a bounded number of times, then admits any value
    depth, node = 0, body
    while "parent" in node.get("properties", {}):
        node, depth = node["properties"]["parent"], depth + 1
    assert 1 <= depth <= 4 and node.get("properties") is None
    for t in src.tools:  # every schema is one the grammar enforces exactly
        check_schema_for(t.spec.parameters, t.spec.name, t.spec.name, objects=t.spec.objects)


async def test_calls_reach_the_service_with_path_query_header_and_body(tmp_path: Path, service: str) -> None:
    src = await load(tmp_path, service)
    res = await tool(src, "pets_getPet").run({"path": {"pet_id": 7}, "query": {"verbose": True},
                                              "header": {"X-Trace": "t-1"}})
    assert not res.is_error and res.content_type == "application/json"
    assert json.loads(res.content) == {"id": 7, "name": "Rex", "verbose": "true", "trace": "t-1"}
    res = await tool(src, "pets_addPet").run({"body": {"name": "Tom", "tag": None}})
    assert json.loads(res.content) == {"added": {"name": "Tom", "tag": None}}
    res = await tool(src, "pets_listPets").run({"query": {"tag": ["a", "b"]}})
    assert json.loads(res.content) == {"tags": ["a", "b"]}


async def test_failures_are_tool_errors_the_model_reads(tmp_path: Path, service: str) -> None:
    src = await load(tmp_path, service, timeout=0.5, max_response_bytes=100_000)
    res = await tool(src, "pets_fail").run({})
    assert res.is_error and res.content == "HTTP 500 Internal Server Error: the database is down"
    res = await tool(src, "pets_slow").run({})
    assert res.is_error and "timeout" in res.content
    res = await tool(src, "pets_huge").run({})
    assert res.is_error and "max_response_bytes" in res.content
    res = await tool(src, "pets_away").run({})
    assert res.is_error and "redirect to another host" in res.content
    res = await tool(src, "pets_home").run({})  # a redirect on the same origin is followed
    assert not res.is_error and json.loads(res.content)["id"] == 7


async def test_path_values_never_leave_the_declared_path(tmp_path: Path, service: str) -> None:
    cfg = OpenAPISource(url=write_spec(tmp_path, {**SPEC, "paths": {"/pets/{pet_id}": {"get": {
        "operationId": "p", "parameters": [{"name": "pet_id", "in": "path", "required": True,
                                            "schema": {"type": "string"}}]}}}}),
        namespace="n", base_url=service + "/api")
    run = (await load_openapi(cfg)).tools[0].run
    res = await run({"path": {"pet_id": "../../spec.json"}})
    # one segment of /api/pets/{pet_id}, never /spec.json
    assert res.is_error and res.content == "HTTP 400 Bad Request: not a pet id: ../../spec.json"
    assert (await run({"path": {"pet_id": ".."}})).is_error


async def test_headers_from_the_environment_never_listed(tmp_path: Path, service: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PETS_KEY", "s3cret")
    src = await load(tmp_path, service, headers={"X-Api-Key": HeaderValue(from_env="PETS_KEY"),
                                                 "X-Other": HeaderValue(value="literal-secret")})
    res = await tool(src, "pets_secret").run({})
    assert res.content == "the secret" and res.content_type == "text/plain"
    assert "s3cret" not in repr(src) and "literal-secret" not in json.dumps(src.details)
    monkeypatch.delenv("PETS_KEY")
    res = await tool(src, "pets_secret").run({})
    assert res.is_error and "PETS_KEY is not set" in res.content


async def test_a_spec_by_url_with_a_relative_server(service: str) -> None:
    src = await load_openapi(OpenAPISource(url=service + "/spec.json", namespace="pets", include=["getPet"]))
    assert [t.spec.name for t in src.tools] == ["pets_getPet"]
    res = await src.tools[0].run({"path": {"pet_id": 3}})
    assert json.loads(res.content)["id"] == 3


@pytest.mark.parametrize(("spec", "message"), [
    ("{not json", "not valid JSON or YAML"),
    ({"swagger": "2.0", "paths": {}}, "not an OpenAPI 3.x document"),
    ({"openapi": "3.0.0"}, "no 'paths'"),
    ({"openapi": "3.0.0", "servers": [{"url": "http://x"}], "paths": {"/a": {"get": {
        "requestBody": {"content": {"application/json": {"schema": {"$ref": "other.json#/x"}}}}}}}},
     "only local $refs"),
    ({"openapi": "3.0.0", "servers": [{"url": "http://x"}], "paths": {"/a": {"$ref": "#/nowhere"}}},
     "points at nothing"),
    ("[" * 100_000 + "]" * 100_000, "nests too deeply"),
])
async def test_a_hostile_or_invalid_spec_is_a_load_error_naming_the_source(tmp_path: Path, spec: Any,
                                                                           message: str) -> None:
    with pytest.raises(SourceError, match="source 'bad'") as err:
        await load_openapi(OpenAPISource(url=write_spec(tmp_path, spec), namespace="bad"))
    assert message in str(err.value)


async def test_a_huge_expansion_is_refused(tmp_path: Path) -> None:
    """Each schema refers to the next one twice: 2**30 nodes if expanded, refused after MAX_NODES."""
    schemas = {f"s{i}": {"type": "object", "properties": {"a": {"$ref": f"#/components/schemas/s{i + 1}"},
                                                          "b": {"$ref": f"#/components/schemas/s{i + 1}"}}}
               for i in range(30)}
    schemas["s30"] = {"type": "string"}
    spec = {"openapi": "3.1.0", "servers": [{"url": "http://x"}], "components": {"schemas": schemas},
            "paths": {"/a": {"post": {"requestBody": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/s0"}}}}}}}}
    with pytest.raises(SourceError, match="more than 200000 schema nodes"):
        await load_openapi(OpenAPISource(url=write_spec(tmp_path, spec), namespace="bad"))
    big = tmp_path / "big.json"
    big.write_text(" " * 10_000_001)
    with pytest.raises(SourceError, match="larger than"):
        await load_openapi(OpenAPISource(url=str(big), namespace="bad"))
