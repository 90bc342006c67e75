"""A pass-through between a real client and the proxy that keeps every exchange, to check what the client saw.

The agent clients (Claude Code, Codex CLI) are programs: their output says whether a turn ended, not what each
answer held. The recorder forwards each request unchanged (streamed answers chunk by chunk, as they come) and
keeps the request body, the status and the answer's bytes, so a test can read every tool call the client was
given and validate it against the tools that request declared.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from tests._processes import free_port

#: request headers not forwarded (aiohttp sets its own)
_HOP = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}


@dataclass
class Exchange:
    method: str
    path: str
    request: Any
    status: int
    content_type: str
    body: bytes

    def sse(self) -> list[dict[str, Any]]:
        """The answer's server-sent events' JSON data, in order (``[DONE]`` left out)."""
        events = []
        for line in self.body.decode("utf-8", "replace").splitlines():
            if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
                events.append(json.loads(line[5:]))
        return events

    def json(self) -> Any:
        return json.loads(self.body)


class Recorder:
    """Serves on a free loopback port in its own thread; ``url`` is where the client goes."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.exchanges: list[Exchange] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the recorder did not start")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(request.method, self.target + request.path_qs, data=raw,
                                         headers=headers) as up:
            out = web.StreamResponse(status=up.status, headers={
                k: v for k, v in up.headers.items() if k.lower() not in _HOP | {"content-encoding"}})
            await out.prepare(request)
            body = bytearray()
            async for chunk in up.content.iter_any():
                body += chunk
                await out.write(chunk)
            await out.write_eof()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        self.exchanges.append(Exchange(request.method, request.path, parsed, up.status,
                                       up.headers.get("Content-Type", ""), bytes(body)))
        return out

    def close(self) -> None:
        async def stop() -> None:
            await self._session.close()
            await self._runner.cleanup()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
