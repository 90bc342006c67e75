"""A scripted stand-in for llama-server behind the real app, for the Messages tests that need no model.

The stand-in answers ``/completion`` (streamed, as the engine always asks) with the text a test sets,
and ``/tokenize`` with one token per character; the proxy in front of it is the real aiohttp app on
the Qwen2.5 template and the hermes dialect, so the anthropic SDK talks to the same code a user's does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from anthropic import AsyncAnthropic

from oaiproxy.api.app import ProxyState, create_app
from oaiproxy.runtime.upstream import Admission, LlamaServerClient
from oaiproxy.settings import Settings
from tests.stand_in_app import hermes_engine

MODEL = "m"
KEY = "sk-ant-test-5e1f"

WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CALL = ['<tool_call>\n{"name": "get_weather", ', '"arguments": {"city": "Paris"}}\n</tool_call>']


@dataclass
class Script:
    """What the stand-in llama-server says next, and what it was asked."""

    pieces: list[str] = field(default_factory=lambda: ["Hello", " there."])
    final: dict[str, Any] = field(default_factory=lambda: {"stop_type": "eos"})
    bodies: list[dict[str, Any]] = field(default_factory=list)


def stand_in(script: Script) -> web.Application:
    async def completion(request: web.Request) -> web.StreamResponse:
        script.bodies.append(await request.json())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in script.pieces:
            await response.write(b"data: " + json.dumps({"content": piece, "stop": False}).encode() + b"\n\n")
        last = {"content": "", "stop": True, "tokens_predicted": len(script.pieces), "tokens_evaluated": 30,
                "timings": {"cache_n": 10}, **script.final}
        await response.write(b"data: " + json.dumps(last).encode() + b"\n\n")
        return response

    async def tokenize(request: web.Request) -> web.Response:
        body = await request.json()
        script.bodies.append(body)
        return web.json_response({"tokens": list(range(len(body["content"])))})

    app = web.Application()
    app.router.add_post("/completion", completion)
    app.router.add_post("/tokenize", tokenize)
    return app


@dataclass
class Proxy:
    script: Script
    http: TestClient[Any, Any]
    sdk: AsyncAnthropic


async def _proxy(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path, **settings: Any) -> Proxy:
    script = Script()
    server = await aiohttp_server(stand_in(script))
    upstream = LlamaServerClient(str(server.make_url("")), admission=Admission(slots=2, max_queue=8))
    s = Settings(**settings)
    engine = hermes_engine(templates_dir, upstream, MODEL, s)
    state = ProxyState(engine=engine, client=upstream, model_ids=[MODEL], request_timeout=20, api_key=s.api_key,
                       cors_origins=s.cors_origin)
    http = await aiohttp_client(create_app(state, max_body_bytes=s.max_body_bytes))
    sdk = AsyncAnthropic(base_url=str(http.server.make_url("")), api_key=s.api_key or "unused", max_retries=0)
    return Proxy(script, http, sdk)


@pytest.fixture
async def stand_in_proxy(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path) -> AsyncIterator[Proxy]:
    p = await _proxy(aiohttp_client, aiohttp_server, templates_dir)
    yield p
    await p.sdk.close()


@pytest.fixture
async def keyed_stand_in_proxy(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path) -> AsyncIterator[Proxy]:
    p = await _proxy(aiohttp_client, aiohttp_server, templates_dir, api_key=KEY)
    yield p
    await p.sdk.close()
