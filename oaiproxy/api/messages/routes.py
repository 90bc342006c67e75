"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: the body checked, then handed to
:class:`oaiproxy.api.messages.serving.MessagesEngine`; :mod:`oaiproxy.api.app` sends the reply (errors
in Anthropic's shape, streams as named server-sent events)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from oaiproxy.api.messages.protocol import CountTokensRequest, MessagesRequest, parse_anthropic
from oaiproxy.api.messages.serving import MessagesEngine

if TYPE_CHECKING:
    from oaiproxy.api.app import ProxyState, Reply


async def _engine(state: ProxyState, model: str | None) -> MessagesEngine:
    # no state of its own: the model's engine is shared
    return MessagesEngine((await state.serving(model)).engine.core)


async def messages(request: web.Request, state: ProxyState, body: Any) -> Reply:
    req: MessagesRequest = parse_anthropic(MessagesRequest, body)
    state.check_model(req.model)
    req.check_supported()
    state.log_bookkeeping(request, req.bookkeeping())
    engine = await _engine(state, req.model)
    return engine.stream(req) if req.stream else engine.complete(req)


async def count_tokens(request: web.Request, state: ProxyState, body: Any) -> Reply:
    req: CountTokensRequest = parse_anthropic(CountTokensRequest, body)
    state.check_model(req.model)
    req.check_supported()
    return (await _engine(state, req.model)).count_tokens(req)
