"""``POST /v1/responses``, and the stored ones: ``GET`` / ``DELETE /v1/responses/{id}`` and
``GET /v1/responses/{id}/input_items``.

A new response's body is checked and translated, then handed to
:class:`oaiproxy.api.responses.serving.ResponsesEngine`; :mod:`oaiproxy.api.app` sends the reply. The
stored ones are read from ``ProxyState.store`` (:mod:`oaiproxy.store`); a database failure there is a
503 (:class:`oaiproxy.store.StoreUnavailable`), in OpenAI's error JSON like every other failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel

from oaiproxy.api.paging import PAGE_DEFAULT, PAGE_MAX, query_limit, query_order
from oaiproxy.api.protocol import parse_request
from oaiproxy.api.responses.protocol import DeletedResponse, InputItemList, Response, ResponsesRequest
from oaiproxy.api.responses.serving import ResponsesEngine
from oaiproxy.errors import BadRequest, NotFound
from oaiproxy.store.responses import ResponseRecord, ResponseStore

if TYPE_CHECKING:
    from oaiproxy.api.app import ProxyState, Reply

def _responses(state: ProxyState) -> ResponseStore | None:
    return state.store.responses if state.store is not None else None


async def create_response(request: web.Request, state: ProxyState, body: Any) -> Reply:
    req: ResponsesRequest = parse_request(ResponsesRequest, body)
    state.check_model(req.model)
    req.check_supported()
    engine = ResponsesEngine(state.engine.core, _responses(state),
                             state.store.conversations if state.store is not None else None)
    engine.check_state(req)
    state.log_bookkeeping(request, req.bookkeeping())
    engine.core = (await state.serving(req.model)).engine.core  # the requested model's, loaded
    return engine.stream(req) if req.stream else engine.complete(req)


def state_of(request: web.Request) -> ProxyState:
    """The app's state, for a route the app calls with the request alone."""
    from oaiproxy.api.app import STATE  # the app imports this module: the key is read when a request comes

    return request.app[STATE]


async def _stored(request: web.Request) -> tuple[ResponseStore, ResponseRecord]:
    """The stored response the path names, or a 404 that says why there is none."""
    rid = request.match_info["response_id"]
    store = _responses(state_of(request))
    if store is None:
        raise NotFound(f"response '{rid}' not found: this server runs without a response store",
                       param="response_id", code="response_not_found")
    record = await store.get(rid)
    if record is None:
        raise NotFound(f"response '{rid}' not found: it was never stored (store: false), or was deleted",
                       param="response_id", code="response_not_found")
    return store, record


def model_json(model: BaseModel) -> web.Response:
    return web.Response(text=model.model_dump_json(), content_type="application/json")


def as_response(record: ResponseRecord) -> Response:
    """A stored response as it was answered."""
    return Response.model_validate({**record.response, "output": record.output_items, "usage": record.usage})


async def get_response(request: web.Request) -> web.Response:
    _, record = await _stored(request)
    return model_json(as_response(record))


async def delete_response(request: web.Request) -> web.Response:
    store, record = await _stored(request)
    if not await store.delete(record.id):
        raise NotFound(f"response '{record.id}' not found: it was deleted meanwhile", param="response_id",
                       code="response_not_found")
    return model_json(DeletedResponse(id=record.id))


def _page_args(request: web.Request) -> tuple[str | None, int, str]:
    limit = query_limit(request, PAGE_DEFAULT, PAGE_MAX)
    return request.query.get("after"), limit, query_order(request, "desc")


async def list_input_items(request: web.Request) -> web.Response:
    """One page of the response's own input items (not the history it continued), newest first by default."""
    after, limit, order = _page_args(request)
    _, record = await _stored(request)
    items = record.input_items if order == "asc" else record.input_items[::-1]
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise BadRequest(f"'after' names no input item of response '{record.id}': {after!r}", param="after",
                             code="invalid_value")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return model_json(InputItemList(data=page, first_id=page[0]["id"] if page else None,
                                    last_id=page[-1]["id"] if page else None, has_more=len(items) > limit))
