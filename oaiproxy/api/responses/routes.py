"""``POST /v1/responses`` and ``GET /v1/responses/{id}``: the body checked and translated, then handed to
:class:`oaiproxy.api.responses.serving.ResponsesEngine`; :mod:`oaiproxy.api.app` sends the reply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from oaiproxy.api.protocol import parse_request
from oaiproxy.api.responses.protocol import ResponsesRequest
from oaiproxy.api.responses.serving import ResponsesEngine
from oaiproxy.errors import NotFound

if TYPE_CHECKING:
    from oaiproxy.api.app import ProxyState, Reply


async def create_response(request: web.Request, state: ProxyState, body: Any) -> Reply:
    req: ResponsesRequest = parse_request(ResponsesRequest, body)
    state.check_model(req.model)
    req.check_supported()
    state.log_bookkeeping(request, req.bookkeeping())
    state.check_upstream(state.managed)
    engine = ResponsesEngine(state.engine.core)
    return engine.stream(req) if req.stream else engine.complete(req)


async def get_response(request: web.Request) -> web.Response:
    """Responses are not stored yet (store: true is refused), so there is none to fetch: a 404 that says why."""
    raise NotFound(f"response '{request.match_info['response_id']}' not found: this server does not store "
                   "responses yet (requests with store: true are refused)", param="response_id",
                   code="response_not_found")
