"""``POST /v1/completions``: the body checked, then handed to
:class:`oaiproxy.api.completions.serving.CompletionEngine`; :mod:`oaiproxy.api.app` sends the reply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from oaiproxy.api.completions.protocol import CompletionRequest
from oaiproxy.api.protocol import parse_request

if TYPE_CHECKING:
    from oaiproxy.api.app import ProxyState, Reply


async def completions(request: web.Request, state: ProxyState, body: Any) -> Reply:
    req: CompletionRequest = parse_request(CompletionRequest, body)
    state.check_model(req.model)
    state.log_bookkeeping(request, {"user": req.user} if req.user is not None else {})
    engine = (await state.serving(req.model)).completions
    return engine.stream(req) if req.stream else engine.complete(req)
