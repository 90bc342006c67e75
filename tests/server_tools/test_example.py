"""The README's server-tools example is true: its tools file loads, and its tools call its service."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from aiohttp.test_utils import TestServer

from oaiproxy.server_tools.catalog import ToolCatalog, read_tools_file
from oaiproxy.server_tools.config import OpenAPISource
from oaiproxy.server_tools.openapi import load_openapi

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "server-tools"


def petstore_app():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("petstore", EXAMPLE / "petstore.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_app()


async def test_example_tools_file_loads_its_brain_and_tools() -> None:
    catalog = await ToolCatalog.open(EXAMPLE / "tools.yaml")
    snap = catalog.snapshot
    assert set(snap.tools) == {"pets_getPet", "pets_listPets", "pets_addPet"}
    assert list(snap.brains) == ["petbot"] and not snap.sources["pets"].error
    assert snap.tools["pets_getPet"].spec.parameters["properties"]["path"]["properties"]["pet_id"]["minimum"] == 1


async def test_example_tools_call_the_example_service() -> None:
    server = TestServer(petstore_app(), host="127.0.0.1")
    await server.start_server()
    try:
        (source,) = read_tools_file(EXAMPLE / "tools.yaml").sources
        assert isinstance(source, OpenAPISource)
        loaded = await load_openapi(source.model_copy(update={"base_url": str(server.make_url("")).rstrip("/")}))
        tools = {t.spec.name: t for t in loaded.tools}
        rex = await tools["pets_getPet"].run({"path": {"pet_id": 1}})
        assert not rex.is_error and '"name": "Rex"' in rex.content
        cats = await tools["pets_listPets"].run({"query": {"tag": "cat"}})
        assert '"Tom"' in cats.content and '"Rex"' not in cats.content
        added = await tools["pets_addPet"].run({"body": {"name": "Kit", "tag": "cat"}})
        assert not added.is_error and '"id": 3' in added.content
        missing = await tools["pets_getPet"].run({"path": {"pet_id": 9}})
        assert missing.is_error and "404" in missing.content
    finally:
        await server.close()
