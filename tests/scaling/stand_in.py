"""Stand-in llama-servers for the pool's tests and the upstream benchmark: ``/completion`` streams a scripted
text a token at a time (a fixed delay per token), ``/health``, ``/props`` and ``/tokenize`` answer, and each
one keeps what a test checks: the prompts it was sent, how many generations ran on it at once, and a KV
cache of one prompt per slot (``timings.cache_n``: the characters of the new prompt its slots already had),
so affinity shows as llama-server would show it. ``fail`` makes it break in the chosen way."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field

from aiohttp import web

#: how a stand-in breaks: "" (it doesn't), "500" (HTTP 500 before any event), "refuse" (closes the connection
#: before any event), "after_first" (one event, then the connection closes), "400" (a request llama-server rejects)
FAILURES = ("", "500", "refuse", "after_first", "400")


def common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


@dataclass
class Replica:
    """One stand-in's script and record."""

    name: str = "r"
    text: str = "Hello there."
    #: seconds per streamed token (a token: 4 characters of the text)
    token_delay: float = 0.0
    slots: int = 2
    fail: str = ""
    healthy: bool = True
    #: the chat template /props reports
    template: str = ""
    #: when set, generations wait for it before their first event (a test holds a slot busy)
    hold: asyncio.Event | None = None
    prompts: list[str] = field(default_factory=list)
    running: int = 0
    most_running: int = 0
    health_checks: int = 0
    cached: list[int] = field(default_factory=list)
    _slot_prompts: list[str] = field(default_factory=list)
    #: slot numbers, least recently used first
    _used: list[int] = field(default_factory=list)

    def cache_hit(self, prompt: str) -> int:
        """The prefix of ``prompt`` its slot has cached, as llama-server picks the slot: the one whose cached
        prompt is at least half the new one's prefix, else an empty one, else the least recently used."""
        best, where = 0, None
        for i, old in enumerate(self._slot_prompts):
            n = common_prefix(old, prompt)
            if n >= len(old) / 2 and n > best:
                best, where = n, i
        if where is None:
            if len(self._slot_prompts) < self.slots:
                self._slot_prompts.append(prompt)
                self._used.append(len(self._slot_prompts) - 1)
                return 0
            where = self._used[0]
            best = common_prefix(self._slot_prompts[where], prompt)
        self._slot_prompts[where] = prompt
        self._used.remove(where)
        self._used.append(where)
        return best


def replica_app(r: Replica) -> web.Application:
    async def completion(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt = body.get("prompt", "")
        r.prompts.append(prompt)
        if r.fail == "500":
            return web.json_response({"error": {"message": "the model fell over"}}, status=500)
        if r.fail == "400":
            return web.json_response({"error": {"message": "the prompt is longer than the context"}}, status=400)
        if r.fail == "refuse":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        r.running += 1
        r.most_running = max(r.most_running, r.running)
        try:
            if r.hold is not None:
                await r.hold.wait()
            cached = r.cache_hit(prompt)
            r.cached.append(cached)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            pieces = [r.text[i:i + 4] for i in range(0, len(r.text), 4)]
            for n, piece in enumerate(pieces):
                if r.token_delay:
                    await asyncio.sleep(r.token_delay)
                event = {"content": piece, "stop": False, "tokens": [n]}
                await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                if r.fail == "after_first":
                    assert request.transport is not None
                    request.transport.close()
                    return response
            last = {"content": "", "stop": True, "stop_type": "eos", "tokens_predicted": len(pieces),
                    "tokens_evaluated": len(prompt), "tokens_cached": cached,
                    "timings": {"cache_n": cached, "prompt_n": len(prompt) - cached}}
            await response.write(b"data: " + json.dumps(last).encode() + b"\n\n")
            return response
        finally:
            r.running -= 1

    async def health(request: web.Request) -> web.Response:
        r.health_checks += 1
        if not r.healthy:
            return web.json_response({"error": {"message": "Loading model"}}, status=503)
        return web.json_response({"status": "ok"})

    async def props(request: web.Request) -> web.Response:
        return web.json_response({"chat_template": r.template, "bos_token": "", "eos_token": "<|im_end|>",
                                  "total_slots": r.slots, "default_generation_settings": {"n_ctx": 4096},
                                  "model_path": None})

    async def tokenize(request: web.Request) -> web.Response:
        return web.json_response({"tokens": list(range(len((await request.json())["content"])))})

    app = web.Application()
    app.router.add_post("/completion", completion)
    app.router.add_get("/health", health)
    app.router.add_get("/props", props)
    app.router.add_post("/tokenize", tokenize)
    return app
