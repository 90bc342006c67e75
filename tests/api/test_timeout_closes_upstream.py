"""The request timeout really closes the upstream request: checked in-process against a stand-in
llama-server that records when the proxy hangs up (a real llama-server only shows this indirectly,
and on a loaded machine too slowly to time)."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from oaiproxy.api.app import ProxyState, create_app
from oaiproxy.api.chat.serving import ChatEngine
from oaiproxy.dialects import get_style
from oaiproxy.engine import Engine
from oaiproxy.runtime.upstream import LlamaServerClient
from oaiproxy.settings import Settings
from oaiproxy.templating.chat_template import ChatTemplate

TIMEOUT = 0.5


class SlowLlamaServer:
    """``/completion`` that never finishes: silent when not streaming, one token every 50 ms when streaming."""

    def __init__(self) -> None:
        self.hung_up: list[float] = []
        self.app = web.Application()
        self.app.router.add_post("/completion", self.completion)

    async def completion(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        try:
            if not body.get("stream"):
                await asyncio.sleep(3600)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            n = 0
            while True:
                n += 1
                event = {"content": "tick ", "stop": False, "tokens_predicted": n, "tokens_evaluated": 3}
                await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                await asyncio.sleep(0.05)
        except (asyncio.CancelledError, ConnectionResetError):
            self.hung_up.append(time.monotonic())  # aiohttp cancels the handler when the client disconnects
            raise


async def _proxy(aiohttp_client, aiohttp_server):
    fake = SlowLlamaServer()
    server = await aiohttp_server(fake.app)  # test servers cancel handlers on disconnect
    upstream = LlamaServerClient(str(server.make_url("")))
    settings = Settings()
    engine = ChatEngine(Engine.from_settings(settings, template=ChatTemplate.default(), style=get_style("generic"),
                                             client=upstream, model_id="m"))
    state = ProxyState(engine=engine, client=upstream, model_ids=["m"], request_timeout=TIMEOUT,
                       api_key=settings.api_key, cors_origins=settings.cors_origin)
    return fake, await aiohttp_client(create_app(state, max_body_bytes=settings.max_body_bytes)), upstream


async def _wait_hung_up(fake: SlowLlamaServer, count: int) -> None:
    deadline = time.monotonic() + 2
    while len(fake.hung_up) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def test_timeout_504_closes_the_upstream_request(aiohttp_client, aiohttp_server) -> None:
    fake, proxy, upstream = await _proxy(aiohttp_client, aiohttp_server)
    started = time.monotonic()
    resp = await proxy.post("/v1/completions", json={"prompt": "x", "max_tokens": 10, "n": 2})
    ended = time.monotonic()
    assert resp.status == 504
    assert (await resp.json())["error"]["code"] == "request_timeout"
    assert TIMEOUT <= ended - started < TIMEOUT + 1
    await _wait_hung_up(fake, 2)
    assert len(fake.hung_up) == 2 and max(fake.hung_up) - ended < 1  # both choices' requests closed
    resp = await proxy.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    assert resp.status == 504
    await _wait_hung_up(fake, 3)
    assert len(fake.hung_up) == 3
    await upstream.close()


async def test_timeout_ends_streams_with_an_error_event(aiohttp_client, aiohttp_server) -> None:
    fake, proxy, upstream = await _proxy(aiohttp_client, aiohttp_server)
    for path, body in (("/v1/completions", {"prompt": "x", "stream": True}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stream": True})):
        before = len(fake.hung_up)
        resp = await proxy.post(path, json=body)
        assert resp.status == 200
        raw = await resp.text()
        ended = time.monotonic()
        events = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        assert json.loads(events[-2])["error"]["code"] == "request_timeout"
        assert len(events) > 3  # ticks streamed before the deadline
        await _wait_hung_up(fake, before + 1)
        assert len(fake.hung_up) == before + 1 and fake.hung_up[-1] - ended < 1
    await upstream.close()
