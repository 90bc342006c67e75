"""A scripted llama-server for the server-tools and thread tests: each /completion writes the next
scripted text (a Hermes ``<tool_call>`` or an answer), split anywhere, and /tokenize counts a token per
character, so the loop, the trim and the threads run on the real app without a model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def call(name: str, arguments: dict[str, Any]) -> str:
    """A call as the Hermes dialect (the Qwen2.5 template's) writes it."""
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


@dataclass
class Rounds:
    """What the stand-in writes on each /completion, in order (the last one repeats), what it was asked,
    and an optional ``during`` hook awaited while a round is generated (another proxy's work); ``fail``
    makes llama-server answer 500."""

    texts: list[str] = field(default_factory=lambda: ["Hello."])
    bodies: list[dict[str, Any]] = field(default_factory=list)
    during: Callable[[], Awaitable[None]] | None = None
    fail: bool = False

    @property
    def prompts(self) -> list[str]:
        return [b["prompt"] for b in self.bodies]

    def next(self) -> str:
        return self.texts.pop(0) if len(self.texts) > 1 else self.texts[0]


def stand_in(rounds: Rounds) -> web.Application:
    async def completion(request: web.Request) -> web.StreamResponse:
        rounds.bodies.append(await request.json())
        if rounds.fail:
            return web.json_response({"error": {"message": "the model fell over"}}, status=500)
        text = rounds.next()
        await asyncio.sleep(0.01)  # let concurrent requests pile up
        if rounds.during is not None:
            await rounds.during()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(0, len(text), 7):  # split anywhere
            await response.write(b"data: " + json.dumps({"content": text[i:i + 7], "stop": False}).encode() + b"\n\n")
        last = {"content": "", "stop": True, "stop_type": "eos", "tokens_predicted": 5, "tokens_evaluated": 40,
                "timings": {"cache_n": 30}}
        await response.write(b"data: " + json.dumps(last).encode() + b"\n\n")
        return response

    async def tokenize(request: web.Request) -> web.Response:  # one token per character
        return web.json_response({"tokens": list(range(len((await request.json())["content"])))})

    app = web.Application()
    app.router.add_post("/completion", completion)
    app.router.add_post("/tokenize", tokenize)
    return app
