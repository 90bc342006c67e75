"""``POST /ui/api/chat``: a Chat Completions request as the playground sends it, with what the proxy did.

The request runs through the same route as ``POST /v1/chat/completions`` (:func:`chat_completions`), on a
copy of the chat engine whose llama-server client records every ``/completion`` it sends: the prompt as
the template rendered it, the GBNF grammar, its lazy triggers, the preserved tokens, the stops, the other
parameters, and the raw text the model wrote back before any parsing. A thinking model's reasoning phase
and each round of a brain's tool loop are one exchange each. A streamed answer gets the record as its
last event (``object: "oaiproxy.inspection"``) before ``data: [DONE]``; a whole one is
``{"completion": ..., "inspection": ...}``. Nothing here plans or parses: it only watches.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import AsyncGenerator, Awaitable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Literal, cast

from aiohttp import web
from pydantic import BaseModel

from oaiproxy.api.chat.routes import chat_completions
from oaiproxy.api.chat.serving import ChatEngine
from oaiproxy.dialects.base import TRIGGER_TYPES
from oaiproxy.runtime.upstream import LlamaServerClient

if TYPE_CHECKING:
    from oaiproxy.api.app import ProxyState, Reply

#: the ``/completion`` fields an exchange shows apart; the rest go to ``params``
PLANNED = ("prompt", "grammar", "grammar_lazy", "grammar_triggers", "preserved_tokens", "stop")
#: llama-server's trigger type numbers, back to their names
TRIGGER_NAMES = {number: name for name, number in TRIGGER_TYPES.items()}


def _trigger(sent: Any) -> dict[str, Any]:
    """A trigger as sent, with ``kind``: its type's name ("word", "pattern"...)."""
    trigger = dict(sent) if isinstance(sent, dict) else {"value": sent}
    kind = trigger.get("type")
    return {**trigger, "kind": TRIGGER_NAMES.get(kind, kind) if isinstance(kind, int) else kind}


class Exchange(BaseModel):
    """One ``/completion`` request as sent to llama-server, and the text that came back."""

    prompt: str
    grammar: str | None = None
    grammar_lazy: bool = False
    #: as sent (``type`` as llama-server's number), with ``kind``, the type's name
    grammar_triggers: list[dict[str, Any]] = []
    preserved_tokens: list[str] = []
    stop: list[str] = []
    params: dict[str, Any] = {}
    raw: str = ""
    #: llama-server's reason for stopping ("eos", "word", "limit"); None: the stream was cut off
    stop_type: str | None = None
    tokens_predicted: int | None = None


class Inspection(BaseModel):
    object: Literal["oaiproxy.inspection"] = "oaiproxy.inspection"
    exchanges: list[Exchange]


class Inspected(BaseModel):
    completion: dict[str, Any]
    inspection: Inspection


class RecordingClient:
    """Stands for the proxy's :class:`LlamaServerClient` (every other attribute is the real one's) and keeps
    each ``/completion`` exchange."""

    def __init__(self, inner: LlamaServerClient):
        self._inner = inner
        self.exchanges: list[Exchange] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _record(self, body: dict[str, Any], raw: str, last: dict[str, Any] | None) -> None:
        self.exchanges.append(Exchange(
            prompt=str(body.get("prompt", "")), grammar=body.get("grammar"),
            grammar_lazy=bool(body.get("grammar_lazy", False)),
            grammar_triggers=[_trigger(t) for t in body.get("grammar_triggers") or []],
            preserved_tokens=list(body.get("preserved_tokens") or []), stop=list(body.get("stop") or []),
            params={k: v for k, v in body.items() if k not in PLANNED}, raw=raw,
            stop_type=(last or {}).get("stop_type"), tokens_predicted=(last or {}).get("tokens_predicted")))

    async def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        data = await self._inner.completion(body)
        self._record(body, data.get("content", ""), data)
        return data

    async def completion_stream(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        parts: list[str] = []
        last: dict[str, Any] | None = None
        try:
            async with aclosing(self._inner.completion_stream(body)) as events:
                async for event in events:
                    parts.append(event.get("content", ""))
                    last = event
                    yield event
        finally:  # a stream the engine closed early (a stop string, a cancelled request) is kept as far as it got
            self._record(body, "".join(parts), last if last and last.get("stop") else None)

    def inspection(self) -> Inspection:
        return Inspection(exchanges=list(self.exchanges))


def recording_state(state: ProxyState) -> tuple[ProxyState, RecordingClient]:
    """A copy of ``state`` whose chat engine talks to llama-server through a :class:`RecordingClient`."""
    recorder = RecordingClient(state.engine.client)
    core = copy.copy(state.engine.core)
    core.client = cast(LlamaServerClient, recorder)
    return dataclasses.replace(state, engine=ChatEngine(core)), recorder


async def _then_inspection(chunks: AsyncGenerator[BaseModel, None],
                           recorder: RecordingClient) -> AsyncGenerator[BaseModel, None]:
    async with aclosing(chunks):
        async for chunk in chunks:
            yield chunk
    yield recorder.inspection()


async def _whole(work: Awaitable[BaseModel], recorder: RecordingClient) -> BaseModel:
    completion = await work
    return Inspected(completion=completion.model_dump(mode="json"), inspection=recorder.inspection())


async def inspected_chat(request: web.Request, state: ProxyState, body: Any) -> Reply:
    """The Chat Completions route on a recording copy of the engine (see the module docstring)."""
    watched, recorder = recording_state(state)
    reply = await chat_completions(request, watched, body)
    if isinstance(reply, AsyncGenerator):
        return _then_inspection(reply, recorder)
    return _whole(reply, recorder)


__all__ = ["Exchange", "Inspected", "Inspection", "RecordingClient", "inspected_chat", "recording_state"]
