"""Legacy streaming (``/v1/completions`` with ``stream: true``) asking for more choices (prompts × ``n``)
than there are llama-server slots: the choices beyond the slots wait their turn and the stream finishes.

Before, the proxy awaited every choice's first event before streaming anything while each started
choice held a slot: the others never got one, and the request hung until the request timeout.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from openai import OpenAI

from oaiproxy.api.app import ProxyState, create_app
from oaiproxy.api.chat.serving import ChatEngine
from oaiproxy.dialects import get_style
from oaiproxy.engine import Engine
from oaiproxy.runtime.upstream import Admission, LlamaServerClient
from oaiproxy.settings import Settings
from oaiproxy.templating.chat_template import ChatTemplate
from tests.api.conftest import MODEL


class CountingLlamaServer:
    """``/completion`` streaming a few ticks, counting how many streams are open at once."""

    def __init__(self, ticks: int = 3) -> None:
        self.ticks = ticks
        self.open = 0
        self.most_open = 0
        self.app = web.Application()
        self.app.router.add_post("/completion", self.completion)

    async def completion(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for n in range(1, self.ticks + 1):
                last = n == self.ticks
                event = {"content": f"<{body['prompt']}:{n}>", "stop": last, "tokens_predicted": n,
                         "tokens_evaluated": 2, **({"stop_type": "limit"} if last else {})}
                await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                await asyncio.sleep(0.02)
            return response
        finally:
            self.open -= 1


async def _proxy(aiohttp_client, aiohttp_server, slots: int):
    fake = CountingLlamaServer()
    server = await aiohttp_server(fake.app)
    upstream = LlamaServerClient(str(server.make_url("")), admission=Admission(slots=slots, max_queue=64))
    settings = Settings()
    engine = ChatEngine(Engine.from_settings(settings, template=ChatTemplate.default(), style=get_style("generic"),
                                             client=upstream, model_id="m"))
    state = ProxyState(engine=engine, client=upstream, model_ids=["m"], request_timeout=20,
                       api_key=settings.api_key, cors_origins=settings.cors_origin)
    return fake, await aiohttp_client(create_app(state, max_body_bytes=settings.max_body_bytes)), upstream


@pytest.mark.timeout(30)
async def test_stand_in_more_choices_than_slots_finish_in_turn(aiohttp_client, aiohttp_server) -> None:
    fake, proxy, upstream = await _proxy(aiohttp_client, aiohttp_server, slots=2)
    resp = await proxy.post("/v1/completions", json={"prompt": ["a", "b", "c"], "n": 2, "stream": True,
                                                     "stream_options": {"include_usage": True}})
    assert resp.status == 200
    events = [line[6:] for line in (await resp.text()).splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all("error" not in c for c in chunks), chunks
    texts: dict[int, str] = {}
    order: list[tuple[int, str | None]] = []
    for c in chunks:
        for choice in c["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
            order.append((choice["index"], choice["finish_reason"]))
    assert texts == {i: "".join(f"<{'abc'[i // 2]}:{n}>" for n in (1, 2, 3)) for i in range(6)}
    finished = [i for i, reason in order if reason]
    assert sorted(finished) == list(range(6)) and all(r in (None, "length") for _, r in order)
    # never more than the two slots upstream, and the later choices started only as earlier ones ended
    assert fake.most_open <= 2
    first_text_of = {i: order.index((i, None)) for i in range(6)}
    assert first_text_of[4] > min(order.index((0, "length")), order.index((1, "length")))
    assert chunks[-1]["usage"]["completion_tokens"] == 18
    await upstream.close()


@pytest.mark.timeout(30)
async def test_stand_in_non_streamed_choices_run_in_turn_too(aiohttp_client, aiohttp_server) -> None:
    fake, proxy, upstream = await _proxy(aiohttp_client, aiohttp_server, slots=2)
    resp = await proxy.post("/v1/completions", json={"prompt": ["a", "b", "c"], "n": 2})
    assert resp.status == 200
    body = await resp.json()
    assert [c["index"] for c in body["choices"]] == list(range(6)) and fake.most_open <= 2
    await upstream.close()


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_more_choices_than_slots_stream_to_the_end(client: OpenAI) -> None:
    """3 prompts × n=2 = 6 choices on a llama-server with 2 slots (the session's, behind the proxy)."""
    stream = client.completions.create(model=MODEL, prompt=["One, two,", "Red, green,", "Monday, Tuesday,"],
                                       n=2, max_tokens=3, temperature=0.8, seed=3, stream=True,
                                       stream_options={"include_usage": True}, timeout=240)
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    usage = None
    for chunk in stream:
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
            if c.finish_reason:
                assert c.index not in finishes, "a choice finished twice"
                finishes[c.index] = c.finish_reason
        usage = chunk.usage or usage
    assert sorted(finishes) == list(range(6)) and set(finishes.values()) <= {"stop", "length"}
    assert sorted(texts) == list(range(6))
    assert usage is not None and 0 < usage.completion_tokens <= 18
