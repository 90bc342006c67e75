"""The real app in front of a scripted llama-server (tests/api/messages/conftest.py) with its store on a real
SQLite file (or PostgreSQL), talked to through the official openai SDK, as a user's client does.

``Script.bodies`` records what the model was asked, so a conversation's history is checked in the prompt itself;
``Conv.failing`` makes the stand-in answer 500, for responses that fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openai import AsyncOpenAI

from oaiproxy.api.app import ProxyState, create_app
from oaiproxy.runtime.upstream import Admission, LlamaServerClient
from oaiproxy.settings import Settings
from oaiproxy.store import Store
from tests.api.messages.conftest import Script, stand_in
from tests.stand_in_app import hermes_engine

MODEL = "m"
KEY = "sk-conv-test-9a2c"


@dataclass
class Conv:
    script: Script
    http: TestClient[Any, Any]
    sdk: AsyncOpenAI
    store: Store | None
    failing: list[bool]

    def prompt(self) -> str:
        return str([b for b in self.script.bodies if "prompt" in b][-1]["prompt"])

    def asked(self) -> int:
        return sum("prompt" in b for b in self.script.bodies)


async def open_proxy(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path, db_url: str | None,
                     api_key: str | None = None) -> Conv:
    script = Script()
    failing = [False]
    upstream_app = stand_in(script)

    @web.middleware
    async def fail(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
        if failing[0] and request.path == "/completion":
            return web.json_response({"error": {"code": 500, "message": "scripted failure"}}, status=500)
        return await handler(request)

    upstream_app.middlewares.append(fail)
    server = await aiohttp_server(upstream_app)
    upstream = LlamaServerClient(str(server.make_url("")), admission=Admission(slots=2, max_queue=8))
    s = Settings()
    engine = hermes_engine(templates_dir, upstream, MODEL, s)
    store = await Store.open(db_url) if db_url is not None else None
    state = ProxyState(engine=engine, client=upstream, model_ids=[MODEL], request_timeout=20, api_key=api_key,
                       cors_origins=[], store=store)
    http = await aiohttp_client(create_app(state, max_body_bytes=s.max_body_bytes))
    sdk = AsyncOpenAI(base_url=str(http.server.make_url("/v1")), api_key=api_key or "unused", max_retries=0)
    return Conv(script, http, sdk, store, failing)


async def _close(p: Conv) -> None:
    await p.sdk.close()
    if p.store is not None:
        await p.store.close()


@pytest.fixture
async def conv(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path, tmp_path: Path) -> AsyncIterator[Conv]:
    p = await open_proxy(aiohttp_client, aiohttp_server, templates_dir, f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    yield p
    await _close(p)


@pytest.fixture
async def keyed(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path, tmp_path: Path) -> AsyncIterator[Conv]:
    p = await open_proxy(aiohttp_client, aiohttp_server, templates_dir, f"sqlite+aiosqlite:///{tmp_path / 'k.db'}",
                         api_key=KEY)
    yield p
    await _close(p)


@pytest.fixture
async def storeless(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path) -> AsyncIterator[Conv]:
    p = await open_proxy(aiohttp_client, aiohttp_server, templates_dir, None)
    yield p
    await _close(p)
