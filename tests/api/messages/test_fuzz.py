"""Fuzz the Messages routes from their own OpenAPI description (schemathesis), against the real app in front
of the scripted llama-server stand-in: every answer is a success or Anthropic's error JSON below 500."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings

from oaiproxy.api.app import ProxyState, create_app
from oaiproxy.api.chat.serving import ChatEngine
from oaiproxy.api.messages.openapi import messages_openapi
from oaiproxy.dialects import get_style
from oaiproxy.engine import Engine
from oaiproxy.runtime.llama_server import free_loopback_port
from oaiproxy.runtime.upstream import Admission, LlamaServerClient
from oaiproxy.settings import Settings
from oaiproxy.templating.chat_template import ChatTemplate
from tests.api.messages.conftest import MODEL, Script, stand_in

_paths, _schemas = messages_openapi()
schema = schemathesis.openapi.from_dict({"openapi": "3.1.0", "info": {"title": "messages", "version": "1"},
                                         "paths": _paths, "components": {"schemas": _schemas}})


@pytest.fixture(scope="module")
def served(templates_dir: Path) -> Iterator[str]:
    """The stand-in and the app on loopback ports, in a thread with its own event loop; the app's URL."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    urls: list[str] = []
    runners: list[web.AppRunner] = []

    async def start() -> None:
        upstream_port, app_port = free_loopback_port(), free_loopback_port()
        up = web.AppRunner(stand_in(Script()))
        await up.setup()
        await web.TCPSite(up, "127.0.0.1", upstream_port).start()
        client = LlamaServerClient(f"http://127.0.0.1:{upstream_port}", admission=Admission(slots=2, max_queue=8))
        path = templates_dir / "Qwen-Qwen2.5-7B-Instruct.jinja"
        tpl = ChatTemplate(path.read_text(encoding="utf-8"), bos_token="", eos_token="<|im_end|>", name=path.name)
        s = Settings()
        engine = ChatEngine(Engine.from_settings(s, template=tpl, style=get_style("hermes"), client=client,
                                                 model_id=MODEL))
        state = ProxyState(engine=engine, client=client, model_ids=[MODEL], request_timeout=20, api_key=None,
                           cors_origins=[])
        proxy = web.AppRunner(create_app(state, max_body_bytes=s.max_body_bytes))
        await proxy.setup()
        await web.TCPSite(proxy, "127.0.0.1", app_port).start()
        runners.extend([proxy, up])
        urls.append(f"http://127.0.0.1:{app_port}")
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert ready.wait(30)
    yield urls[0]

    async def stop() -> None:
        for runner in runners:
            await runner.cleanup()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def check(status: int, text: str) -> None:
    assert status < 500, f"{status}: {text[:500]}"
    if status >= 400:
        body: Any = json.loads(text)
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"} and body["error"]["message"]


@schema.parametrize()
@pytest.mark.timeout(600)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_messages_fuzz(case: Any, served: str) -> None:
    response = case.call(base_url=served, timeout=30)
    check(response.status_code, response.text)
