"""The only way the proxy talks to llama-server: ``/completion`` and a few read-only endpoints.

Never llama-server's chat endpoint: prompts, grammars and parsing are ours.
Failures become :mod:`oaiproxy.errors` exceptions, so the HTTP layer only
translates them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from oaiproxy import metrics
from oaiproxy.errors import BadRequest, Overloaded, UpstreamError, UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger("oaiproxy.upstream")
T = TypeVar("T")
#: the longest stream event line accepted (the final event repeats the prompt: ~8 MB for 1M tokens)
MAX_EVENT_BYTES = 64 << 20


@dataclass
class ServerProps:
    """What a running llama-server says about itself (``/props``)."""

    chat_template: str | None
    bos_token: str
    eos_token: str
    context_length: int | None
    model_path: str | None
    total_slots: int | None


class Admission:
    """At most ``slots`` generations upstream at once, at most ``max_queue`` more waiting.

    llama-server queues without bound; a proxy in front of users must say "busy"
    instead of letting latency and memory grow, so a request that would wait
    beyond the queue gets a 429 with ``Retry-After`` at once.
    """

    def __init__(self, slots: int, max_queue: int):
        self.slots = slots
        self.max_queue = max_queue
        self.active = 0
        self.waiting = 0
        #: requests refused because the queue was full, since start (for /metrics)
        self.rejected = 0
        self._free = asyncio.Semaphore(slots)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._free.locked() and self.waiting >= self.max_queue:
            self.rejected += 1
            raise Overloaded(
                f"server busy: {self.active} requests generating and {self.waiting} waiting "
                f"(queue limit {self.max_queue}); retry shortly",
                code="queue_full", headers={"Retry-After": "1"})
        self.waiting += 1
        queued = time.perf_counter()
        try:
            await self._free.acquire()
        finally:
            self.waiting -= 1
        metrics.note_queue_wait(time.perf_counter() - queued)
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self._free.release()


class LlamaServerClient:
    """An aiohttp session bound to one llama-server base URL.

    With ``stall_timeout``, a ``/completion`` stream that brings no event for that
    many seconds fails (502, or an error event in a client's stream) and is counted
    in ``stalls``; ``on_stall`` (the supervisor's restart, for a spawned server) is
    called with the reason. llama-server can wedge while ``/health`` says ok — a
    full log pipe did it — and nothing else would notice: every slot stops and
    every request waits for the 600 s read timeout.
    """

    def __init__(self, base_url: str, *, connect_timeout: float = 10.0, read_timeout: float = 600.0,
                 admission: Admission | None = None, stall_timeout: float | None = None,
                 on_stall: Callable[[str], object] | None = None):
        self.base_url = base_url.rstrip("/")
        self.admission = admission or Admission(slots=1 << 16, max_queue=0)
        self.stall_timeout = stall_timeout
        self.on_stall = on_stall
        #: generations the watchdog ended, and the last one's reason (for /health)
        self.stalls = 0
        self.last_stall: str | None = None
        #: each slot's context in tokens, when known (for /health)
        self.context_per_slot: int | None = None
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> LlamaServerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # no connection limit of our own: llama-server's slots are the limit
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=0, force_close=False)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _get_json(self, path: str, timeout: float = 10.0) -> Any:
        try:
            async with self.session.get(self.base_url + path, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if resp.status != 200:
                    raise UpstreamError(f"llama-server {path} answered HTTP {resp.status}")
                return await resp.json(content_type=None)
        except TimeoutError:
            raise UpstreamTimeout(f"llama-server {path} did not answer within {timeout:.0f} s") from None
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"cannot reach llama-server at {self.base_url}: {exc}") from None

    async def health(self) -> bool:
        try:
            async with self.session.get(self.base_url + "/health", timeout=aiohttp.ClientTimeout(total=3)) as resp:
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def props(self) -> ServerProps:
        data = await self._get_json("/props")
        settings = data.get("default_generation_settings") or {}
        return ServerProps(
            chat_template=data.get("chat_template") or None,
            bos_token=data.get("bos_token") or "",
            eos_token=data.get("eos_token") or "",
            context_length=settings.get("n_ctx") or data.get("n_ctx"),
            model_path=data.get("model_path"),
            total_slots=data.get("total_slots"),
        )

    async def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        """llama-server's ``/tokenize``: the token ids of ``text`` (BOS included when the model adds one)."""
        answer = await self._post_json("/tokenize", {"content": text, "add_special": add_special})
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list):
            raise UpstreamError("llama-server /tokenize answered without 'tokens'")
        return tokens

    async def _post_json(self, path: str, body: dict[str, Any]) -> Any:
        try:
            async with self.session.post(self.base_url + path, json=body) as resp:
                return await self._json_or_raise(resp, path)
        except TimeoutError:
            raise UpstreamTimeout(f"llama-server {path} timed out") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"llama-server {path} failed: {exc}") from None

    async def _json_or_raise(self, resp: aiohttp.ClientResponse, path: str) -> Any:
        text = await resp.text()
        if resp.status == 200:
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise UpstreamError(f"llama-server {path} sent invalid JSON") from None
        raise _error_from_upstream(resp.status, text, path)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        """llama-server's OpenAI-shaped ``/v1/embeddings`` (the server must run with ``--embeddings``)."""
        answer: dict[str, Any] = await self._post_json("/v1/embeddings", body)
        return answer

    async def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        """One whole ``/completion`` answer, assembled from llama-server's stream.

        Streaming even here is what lets a cancelled request stop generating: with
        ``stream: false`` llama-server sends nothing until it is done, and aiohttp
        keeps a request cancelled before the response headers on an open
        connection, so the slot would go on generating for nobody. The assembled
        answer has the final event's fields (``stop_type``, ``tokens_evaluated``,
        ``timings``...), all the content, and every token's probabilities.
        """
        content: list[str] = []
        probs: list[Any] = []
        last: dict[str, Any] = {}
        async with aclosing(self.completion_stream(body)) as events:
            async for event in events:
                content.append(event.get("content", ""))
                probs.extend(event.get("completion_probabilities") or [])
                last = event
        return {**last, "content": "".join(content), "completion_probabilities": probs}

    async def completion_stream(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Stream ``/completion`` events; closing the iterator closes the connection,
        which makes llama-server stop generating and free the slot."""
        async with self.admission.slot():
            # aclosing: closing this generator must close the inner one (and its connection) now,
            # not when the garbage collector gets to it
            async with aclosing(self._stream("/completion", body)) as events:
                async for event in events:
                    yield event

    async def _post_fresh_if_stale(self, path: str, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """POST, retrying once when a pooled keep-alive connection turns out to be closed.

        llama-server may close an idle connection just as the pool hands it out;
        the request then never reached it ("Can not write request body", or a
        disconnect before any answer), so sending it again on a new connection
        cannot run it twice.
        """
        try:
            return await self.session.post(self.base_url + path, json=body)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            log.debug("stale upstream connection (%s); retrying on a new one", exc)
            return await self.session.post(self.base_url + path, json=body)

    async def _stream(self, path: str, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """llama-server's event stream, watched for progress.

        ``return_progress`` makes llama-server send an event after each prompt batch
        too, so a long prompt being evaluated is progress, not a stall; those events
        carry no token (their ``tokens`` is a placeholder ``[0]``) and are not passed on.
        Only the wait for llama-server is timed: time spent in ``yield`` (a slow client
        downstream) is not llama-server's stall.
        """
        try:
            post = self._post_fresh_if_stale(path, {**body, "stream": True, "return_progress": True})
            async with await self._watched(post) as resp:
                if resp.status != 200:
                    raise _error_from_upstream(resp.status, await resp.text(), path)
                async for raw in self._lines(resp.content):
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        if line.startswith(b"error:"):
                            raise UpstreamError(f"llama-server stream error: {line[6:].decode(errors='replace')}")
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        return
                    try:
                        event = json.loads(payload)
                    except json.JSONDecodeError:
                        raise UpstreamError("llama-server sent an invalid stream event") from None
                    if not isinstance(event, dict):
                        raise UpstreamError("llama-server sent an invalid stream event")
                    if "error" in event and "content" not in event:
                        err = event["error"]
                        raise UpstreamError(f"llama-server: {err.get('message') if isinstance(err, dict) else err}")
                    if "prompt_progress" in event and not event.get("stop") and not event.get("tokens_predicted"):
                        continue  # progress of the prompt's evaluation: no token yet
                    metrics.note_first_token()
                    if event.get("stop"):
                        metrics.note_tokens(int(event.get("tokens_evaluated") or 0),
                                            int(event.get("tokens_predicted") or 0),
                                            int((event.get("timings") or {}).get("cache_n") or 0))
                    yield event
                    if event.get("stop"):
                        return
        except TimeoutError:
            raise UpstreamTimeout("llama-server /completion stream timed out") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"llama-server /completion failed: {exc}") from None

    async def _lines(self, content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
        """The stream's lines, each step watched for stalls.

        Split here rather than with aiohttp's ``readline``, which refuses a line over 512 KiB: the
        final ``/completion`` event repeats the whole prompt, over 512 KiB from ~130k tokens on.
        """
        buf = bytearray()
        scanned = 0  # bytes of buf already known to hold no newline
        while True:
            chunk = await self._watched(content.readany())
            if not chunk:
                if buf:
                    yield bytes(buf)
                return
            buf += chunk
            start = 0
            while (end := buf.find(b"\n", max(start, scanned))) >= 0:
                yield bytes(buf[start:end + 1])
                start = end + 1
            if start:
                del buf[:start]
            scanned = len(buf)
            if len(buf) > MAX_EVENT_BYTES:
                raise UpstreamError(f"llama-server sent a stream event over {MAX_EVENT_BYTES >> 20} MiB")

    async def _watched(self, step: Awaitable[T]) -> T:
        """Await one step of a generation (the response headers, or the next line), bounded by the
        stall timeout; past it, :meth:`_stalled` decides what happens and the step fails."""
        stall = self.stall_timeout
        if stall is None:
            return await step
        watch = asyncio.timeout(stall)
        try:
            async with watch:
                return await step
        except TimeoutError:
            if not watch.expired():
                raise  # aiohttp's own read timeout, not ours
            raise await self._stalled(stall) from None

    async def _stalled(self, stall: float) -> UpstreamError:
        """Count a stalled generation, tell the supervisor, and return the error the request ends with."""
        healthy = await self.health()
        reason = (f"a generation made no progress for {stall:g} s (--stall-timeout) while llama-server "
                  + ("reported healthy" if healthy else "did not answer /health either"))
        self.stalls += 1
        self.last_stall = reason
        restarting = False
        if self.on_stall is not None:
            try:
                restarting = bool(self.on_stall(reason))
            except Exception:  # the request must still end cleanly
                log.exception("stall handler failed")
        log.error("%s; %s", reason, "restarting llama-server" if restarting else
                  "failing the request" + ("" if self.on_stall is not None else " (not spawned by oaiproxy: "
                                           "restart it yourself)"))
        return UpstreamError(f"llama-server stalled: {reason}" + ("; it is being restarted" if restarting else ""),
                             code="upstream_stalled")


def _error_from_upstream(status: int, text: str, path: str) -> Exception:
    try:
        err = json.loads(text).get("error", {})
        message = err.get("message") if isinstance(err, dict) else str(err)
    except (json.JSONDecodeError, AttributeError):
        message = text[:500]
    if status == 400:
        # e.g. a prompt longer than the context: the client's request, not our fault
        return BadRequest(f"llama-server rejected the request: {message}", code="upstream_rejected")
    if status == 503:
        return UpstreamUnavailable(f"llama-server is busy or loading: {message}", headers={"Retry-After": "1"})
    return UpstreamError(f"llama-server {path} answered HTTP {status}: {message}")
