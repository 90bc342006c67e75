"""The HTTP layer: the aiohttp application, its middlewares, health, models and server-sent events.

Each API's route lives in its package (``chat/``, ``completions/``, ``embeddings/``, ``messages/``,
``responses/``, each a ``routes.py``): it checks and translates the body and returns a :data:`Reply`,
the answer still to be awaited or the stream still to be sent. This module sends it, within the
request's deadline, as JSON or as SSE, and turns every failure into the API's own error JSON with the
right status: OpenAI's, or Anthropic's on the ``/v1/messages`` paths, with each API's own
server-sent events (see :class:`Wire`). No generation logic lives here.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from oaiproxy import metrics
from oaiproxy.api.chat.routes import chat_completions
from oaiproxy.api.chat.serving import ChatEngine
from oaiproxy.api.completions.routes import completions
from oaiproxy.api.completions.serving import CompletionEngine
from oaiproxy.api.conversations.routes import (
    create_conversation,
    create_items,
    delete_conversation,
    delete_item,
    get_conversation,
    get_item,
    list_items,
    update_conversation,
)
from oaiproxy.api.embeddings.routes import embeddings
from oaiproxy.api.embeddings.serving import EmbeddingEngine
from oaiproxy.api.messages.protocol import ErrorResponse as AnthropicErrorResponse
from oaiproxy.api.messages.routes import count_tokens, messages
from oaiproxy.api.plain.routes import answer, plain
from oaiproxy.api.plain.threads import add_to_thread, delete_thread, read_thread, run_thread
from oaiproxy.api.protocol import ErrorResponse, Model, ModelList
from oaiproxy.api.responses.protocol import ErrorEvent as ResponsesErrorEvent
from oaiproxy.api.responses.routes import create_response, delete_response, get_response, list_input_items
from oaiproxy.api.ui import STATIC as UI_STATIC
from oaiproxy.api.ui import grammar, index, inspected_chat, list_threads, sample, status, to_ui, watch_log
from oaiproxy.errors import (
    APIError,
    AuthenticationFailed,
    BadRequest,
    InternalError,
    NotFound,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from oaiproxy.metrics import Metrics, PlanCacheView, RequestRecord, UpstreamView
from oaiproxy.runtime.llama_server import ManagedServer
from oaiproxy.runtime.models import ModelSet, ServedModel, request_scope
from oaiproxy.runtime.pool import Member, UpstreamPool
from oaiproxy.runtime.upstream import LlamaServerClient
from oaiproxy.server_tools.catalog import Snapshot, ToolCatalog
from oaiproxy.store import Store

log = logging.getLogger("oaiproxy.app")

@dataclass
class ProxyState:
    """What the routes need; built by :mod:`oaiproxy.server` (the settings-backed fields from ``Settings``)."""

    engine: ChatEngine
    client: LlamaServerClient
    model_ids: list[str]
    #: ``--request-timeout``
    request_timeout: float
    #: ``--api-key``; None: no authentication
    api_key: str | None = field(repr=False)
    #: allowed browser origins (``--cors-origin``, "*" for any); empty: no CORS headers at all
    cors_origins: list[str]
    managed: ManagedServer | None = None
    started: float = field(default_factory=time.time)
    completions: CompletionEngine | None = None
    #: None when neither --embedding-model nor --embedding-endpoint is set
    embeddings: EmbeddingEngine | None = None
    embedding_managed: ManagedServer | None = None
    #: the ``--tools`` file's sources and brains (None: no server tools)
    catalog: ToolCatalog | None = None
    #: stored responses (and threads); None: the proxy keeps no state
    store: Store | None = None
    #: this app's Prometheus metrics (``GET /metrics``), on a registry of its own
    metrics: Metrics = field(default_factory=Metrics)
    #: several models, each loaded on first use (None: the one model above; then ``engine`` is the first's)
    models: ModelSet[ChatEngine, CompletionEngine] | None = None

    def __post_init__(self) -> None:
        if self.completions is None:
            self.completions = CompletionEngine(self.client, self.model_ids[0])

    async def serving(self, model: str | None) -> ServedModel[ChatEngine, CompletionEngine]:
        """What serves ``model`` (None: the default model) for this request, ready: with several models it is
        loaded if need be and held until the request ends; a 503 while its llama-server is not ready."""
        if self.models is None:
            self.check_upstream(self.managed)
            assert self.completions is not None
            return ServedModel(self.model_ids[0], self.engine, self.completions, self.client, process=self.managed)
        served = await self.models.acquire(model)
        self.check_upstream(served.managed)
        if served is self.models.default and self.engine is not served.engine:
            # ``engine`` is the default model's, as with one model: a copy of the state may give its own
            # (the UI's inspector records through it)
            return ServedModel(served.id, self.engine, served.completions, served.client, process=served.process)
        return served

    @property
    def all_model_ids(self) -> list[str]:
        """Chat model first, then the embedding model if it is a different one, then the brains."""
        ids = list(self.model_ids)
        if self.embeddings is not None and self.embeddings.model_id not in ids:
            ids.append(self.embeddings.model_id)
        return ids + [b for b in self.brain_names if b not in ids]

    @property
    def tools_snapshot(self) -> Snapshot | None:
        """The server tools and brains now (None: no ``--tools``); a request reads it once, so a reload in
        the middle changes nothing for it."""
        return self.catalog.snapshot if self.catalog is not None else None

    @property
    def brain_names(self) -> list[str]:
        snapshot = self.tools_snapshot
        return list(snapshot.brains) if snapshot is not None else []

    def check_model(self, model: str | None) -> None:
        """A 404 unless ``model`` (when given) is the chat model."""
        if model is not None and model not in self.model_ids:
            raise NotFound(f"model '{model}' does not exist; this server serves "
                           + ", ".join(f"'{m}'" for m in self.model_ids), param="model", code="model_not_found")
        metrics.note_model(model or self.model_ids[0])

    @staticmethod
    def check_upstream(managed: ManagedServer | None) -> None:
        """A 503 (retry in 2 s) while the llama-server this proxy supervises is not ready."""
        if managed is not None and managed.state != "ready":
            raise UpstreamUnavailable(
                f"llama-server is {managed.state}" + (f": {managed.last_error}" if managed.last_error else ""),
                headers={"Retry-After": "2"})

    @staticmethod
    def log_bookkeeping(request: web.Request, fields: dict[str, Any]) -> None:
        """``user``, ``metadata``, ``store``...: accepted, changing nothing in the answer, and logged."""
        if fields:
            log.debug("%s %s: %s", request.method, request.path,
                      ", ".join(f"{k}={v!r}" for k, v in fields.items()))


STATE = web.AppKey("state", ProxyState)
MAX_BODY = web.AppKey("max_body_bytes", int)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: what an API route gives back: the answer still to be awaited, or the chunks still to be streamed
Reply = Awaitable[BaseModel] | AsyncGenerator[BaseModel, None]
#: an API route: the request, the state and the decoded JSON body in, a :data:`Reply` out
APIRoute = Callable[[web.Request, ProxyState, Any], Awaitable[Reply]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    return web.Response(text=json.dumps(data, ensure_ascii=False), status=status,
                        content_type="application/json", headers=headers)


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


def _named_sse(data: dict[str, Any]) -> bytes:
    """An event named after its ``type`` (``event: message_start``), as Anthropic's SDKs read them."""
    return f"event: {data.get('type', 'message')}\n".encode() + _sse(data)


@dataclass(frozen=True)
class Wire:
    """How one family of APIs writes what this module sends: its error JSON, and its server-sent events."""

    #: a failure as the API's error body (also the payload of a stream's error event)
    error: Callable[[APIError], BaseModel]
    #: one stream item (already dumped to JSON) as SSE bytes
    event: Callable[[dict[str, Any]], bytes]
    #: what ends a stream
    end: bytes
    #: a stream's error event, given the last event sent (None: the error body itself)
    stream_error: Callable[[APIError, dict[str, Any]], BaseModel] | None = None

    def error_event(self, exc: APIError, last: dict[str, Any]) -> bytes:
        payload = self.stream_error(exc, last) if self.stream_error else self.error(exc)
        return self.event(payload.model_dump(mode="json"))


def _responses_stream_error(exc: APIError, last: dict[str, Any]) -> BaseModel:
    return ResponsesErrorEvent(type="error", sequence_number=int(last.get("sequence_number", -1)) + 1,
                               code=exc.code, message=exc.message, param=exc.param)


OPENAI_WIRE = Wire(error=ErrorResponse.of, event=_sse, end=b"data: [DONE]\n\n")
#: Anthropic: ``{"type": "error", "error": {type, message}}``, events named by type, no end marker
ANTHROPIC_WIRE = Wire(error=AnthropicErrorResponse.of, event=_named_sse, end=b"")
#: OpenAI Responses: OpenAI's error JSON, events named by type and numbered, a stream's error an ``error`` event
RESPONSES_WIRE = Wire(error=ErrorResponse.of, event=_named_sse, end=b"", stream_error=_responses_stream_error)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def wire_for(path: str) -> Wire:
    """The wire of the API that owns ``path`` (unknown paths under ``/v1/messages`` or ``/v1/responses`` too)."""
    if _under(path, "/v1/messages"):
        return ANTHROPIC_WIRE
    return RESPONSES_WIRE if _under(path, "/v1/responses") else OPENAI_WIRE


def error_response(request: web.Request, exc: APIError) -> web.Response:
    return json_response(wire_for(request.path).error(exc), exc.status, exc.headers)


#: routes whose request line is logged at debug level: probes and scrapers call them all the time
QUIET_PATHS = ("/health", "/metrics")


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The request's id (the client's ``X-Request-Id`` if sane, else a new one, sent back in the same header),
    its record for the stages below, and its metrics and log line when it ends."""
    record = RequestRecord(metrics.request_id(request.headers.get("X-Request-Id")), request.app[STATE].metrics,
                           request.method, request.path, quiet=request.path in QUIET_PATHS)
    token = metrics.begin(record)
    record.metrics.in_flight.inc()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:  # else add_request_id did, as the stream began
            response.headers["X-Request-Id"] = record.id
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["X-Request-Id"] = record.id
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        status = 499  # the client went away (nginx's number for it)
        raise
    finally:
        record.metrics.in_flight.dec()
        resource = request.match_info.route.resource
        record.finish(resource.canonical if resource is not None else "unmatched", status)
        metrics.end(token)


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: ``X-Request-Id`` on a stream, whose headers go out before the handler returns."""
    record = metrics.current()
    if record is not None:
        response.headers["X-Request-Id"] = record.id


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except APIError as exc:
        metrics.note_error(exc.code or exc.type)
        if exc.status >= 500:
            log.warning("%s %s -> %d: %s", request.method, request.path, exc.status, exc.message)
        return error_response(request, exc)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[MAX_BODY]
        return error_response(request, BadRequest(f"request body too large: the limit is {limit} bytes "
                                                  "(--max-body-bytes)", param="body", code="request_too_large",
                                                  status=413))
    except web.HTTPNotFound:
        return error_response(request, NotFound(f"unknown route {request.method} {request.path}",
                                                code="not_found"))
    except web.HTTPMethodNotAllowed as exc:
        return error_response(request, BadRequest(
            f"method {request.method} not allowed on {request.path}; use {', '.join(sorted(exc.allowed_methods))}",
            code="method_not_allowed", status=405, headers={"Allow": ",".join(sorted(exc.allowed_methods))}))
    except web.HTTPException:
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(request, InternalError("internal error in oaiproxy; see its log",
                                                     code="internal_error"))


@web.middleware
async def models_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With several models: the ones a request is served by stay loaded until it ends (its stream included)."""
    if request.app[STATE].models is None:
        return await handler(request)
    async with request_scope():
        return await handler(request)


def _key_matches(request: web.Request, key: str) -> bool:
    """Whether the request carries ``key``, as ``Authorization: Bearer KEY`` (OpenAI's SDKs, Anthropic's
    ``auth_token``) or ``x-api-key: KEY`` (Anthropic's SDKs); every candidate compared in constant time."""
    candidates = []
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        candidates.append(token.strip())
    if "x-api-key" in request.headers:
        candidates.append(request.headers["x-api-key"].strip())
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate.encode(), key.encode())
    return matched


#: the paths --api-key leaves open (the UI's page holds no data: it asks for the key)
OPEN_PATHS = ("/health", "/openapi.json", "/ui")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.app[STATE].api_key
    # /v1/..., the UI's data (/ui/api/...), POST / and the threads (/<thread>); health, the OpenAPI document,
    # the UI's page (GET / redirects to it) stay open
    guarded = request.path.startswith(("/v1/", "/ui/api/", "/admin/")) or (
        request.path.count("/") == 1 and request.path not in OPEN_PATHS
        and not (request.path == "/" and request.method in ("GET", "HEAD")))
    if key and guarded and request.method != "OPTIONS" and not _key_matches(request, key):
        if wire_for(request.path) is ANTHROPIC_WIRE:
            raise AuthenticationFailed("Incorrect or missing API key. Send it as 'x-api-key: KEY' "
                                       "(or 'Authorization: Bearer KEY').")
        raise AuthenticationFailed()
    return await handler(request)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer browsers' preflight requests; the headers of other responses come from :func:`add_cors_headers`."""
    origins = request.app[STATE].cors_origins
    if origins and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        allowed = allowed_origin(origins, request.headers.get("Origin"))
        if allowed is None:
            return error_response(request, BadRequest(f"origin {request.headers.get('Origin')!r} is not allowed "
                                                    "(see --cors-origin)", code="origin_not_allowed", status=403))
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers")
            or "Authorization, Content-Type, x-api-key, anthropic-version",
            "Access-Control-Max-Age": "600",
        })
    return await handler(request)


def allowed_origin(origins: list[str], origin: str | None) -> str | None:
    """The Access-Control-Allow-Origin value for a request from ``origin``, or None to send no CORS headers."""
    if not origins or not origin:
        return None
    if "*" in origins:
        return "*"  # keys travel in the Authorization header, not cookies, so "*" is safe
    return origin if origin.rstrip("/") in origins else None


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: covers errors and SSE streams too, whose headers go out before the body."""
    origins = request.app[STATE].cors_origins
    if not origins:
        return
    allowed = allowed_origin(origins, request.headers.get("Origin"))
    if allowed is None:
        return
    response.headers["Access-Control-Allow-Origin"] = allowed
    response.headers["Access-Control-Expose-Headers"] = "Retry-After, X-Request-Id"
    if allowed != "*":
        response.headers.add("Vary", "Origin")


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}", param="body", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("the request body nests too deeply", param="body", code="invalid_json") from None


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    pool = state.client if isinstance(state.client, UpstreamPool) else None
    if pool is not None:
        await pool.check_all()  # never a stale state
    upstream_ok = await state.client.health()
    managed = state.managed
    body: dict[str, Any] = {
        "status": "ok" if upstream_ok else "unavailable",
        "upstream": {"url": state.client.base_url, "healthy": upstream_ok,
                     "state": managed.state if managed else ("ready" if upstream_ok else "unreachable"),
                     "managed": managed is not None,
                     "error": managed.last_error if managed else None,
                     "context_per_slot": state.client.context_per_slot,
                     "slots": state.client.admission.slots,
                     # the stall watchdog: generations it ended, and why llama-server was last restarted
                     "stalls": state.client.stalls,
                     "last_stall": state.client.last_stall,
                     "restarts_in_window": len(managed.restarts) if managed else 0,
                     "last_restart_reason": managed.last_restart_reason if managed else None},
        "model": state.model_ids[0],
        "style": state.engine.style.name,
        "uptime_s": round(time.time() - state.started, 1),
        "queue": {"waiting": state.client.admission.waiting, "generating": state.client.admission.active,
                  "limit": state.client.admission.max_queue, "rejected": state.client.admission.rejected},
    }
    if pool is not None:
        # the pool as a whole above ("degraded": some upstream out), each of its upstreams here
        routable = pool.routable_count()
        body["upstream"].update(state="ready" if routable == len(pool.members) else "degraded" if routable
                                else "unavailable", managed=any(m.managed is not None for m in pool.members),
                                error=None if routable else pool.summary(), upstreams=len(pool.members),
                                routable=routable, affinity={"enabled": pool.affinity, "hits": pool.affinity_hits,
                                                             "misses": pool.affinity_misses},
                                restarts_in_window=sum(len(m.managed.restarts) for m in pool.members if m.managed))
        body["upstreams"] = pool.views()
    else:
        up = body["upstream"]
        body["upstreams"] = [{"name": "default", "url": up["url"], "state": up["state"],
                              "routable": upstream_ok, "in_flight": state.client.admission.active,
                              "slots": state.client.admission.slots, "managed": up["managed"]}]
    if state.embeddings is not None:
        emb_ok = await state.embeddings.client.health()
        emb_managed = state.embedding_managed
        body["embeddings"] = {"url": state.embeddings.client.base_url, "healthy": emb_ok,
                              "model": state.embeddings.model_id,
                              "state": emb_managed.state if emb_managed else ("ready" if emb_ok else "unreachable"),
                              "managed": emb_managed is not None,
                              "error": emb_managed.last_error if emb_managed else None}
    if state.models is not None:
        upstream_ok = await _models_health(state.models, body)
    return json_response(body, 200 if upstream_ok else 503)


async def _models_health(models: ModelSet[ChatEngine, CompletionEngine], body: dict[str, Any]) -> bool:
    """Several models: each one's state in ``models``; healthy unless a loaded one is not (an unloaded model
    loads on first use). ``upstream`` above is the default model's."""
    views = []
    for model in models.models.values():
        view = model.view()
        view["healthy"] = await model.client.health() if model.process is not None else None
        views.append(view)
    ok = all(v["healthy"] is not False for v in views)
    body["models"] = views
    body["max_loaded"] = models.max_loaded
    body["status"] = "ok" if ok else "unavailable"
    if models.default.process is None:
        body["upstream"].update(state=models.default.state, url=None)
        body["upstreams"][0].update(state=models.default.state, url=None)
    return ok


def _upstream_view(client: LlamaServerClient, role: str, healthy: bool, managed: ManagedServer | None) -> UpstreamView:
    admission = client.admission
    return UpstreamView(url=client.base_url, role=role, healthy=healthy, in_flight=admission.active,
                        waiting=admission.waiting, slots=admission.slots, rejected=admission.rejected,
                        stalls=client.stalls, restarts=len(managed.restarts) if managed else None)


def _member_view(pool: UpstreamPool, member: Member) -> UpstreamView:
    """One upstream of a pool: its own health, slots and in-flight; the queue is the pool's, shown on the first."""
    first = member is pool.members[0]
    return UpstreamView(url=member.client.base_url, role="chat", healthy=member.routable, in_flight=member.in_flight,
                        waiting=pool.gate.waiting if first else 0, slots=member.slots,
                        rejected=pool.gate.rejected if first else 0, stalls=member.client.stalls,
                        restarts=len(member.managed.restarts) if member.managed else None)


async def metrics_text(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus' text format; upstream health is checked at the scrape."""
    state = request.app[STATE]
    if isinstance(state.client, UpstreamPool):
        await state.client.check_all()
        upstreams = [_member_view(state.client, m) for m in state.client.members]
    elif state.models is not None:  # one chat upstream per loaded model
        upstreams = [_upstream_view(m.client, "chat", await m.client.health(), m.managed)
                     for m in state.models.loaded()]
    else:
        upstreams = [_upstream_view(state.client, "chat", await state.client.health(), state.managed)]
    if state.embeddings is not None and state.embeddings.client is not state.client:
        emb = state.embeddings.client
        upstreams.append(_upstream_view(emb, "embeddings", await emb.health(), state.embedding_managed))
    engines = ([(m.id, m.engine) for m in state.models.models.values()] if state.models is not None
               else [(state.model_ids[0], state.engine)])
    caches = []
    for model_id, engine in engines:
        cache = engine.core.plan_cache.stats()
        caches.append(PlanCacheView(model=model_id, hits=cache.hits, misses=cache.misses, bypassed=cache.bypassed,
                                    entries=cache.entries, bytes=cache.bytes, max_bytes=cache.max_bytes))
    return web.Response(body=state.metrics.render(upstreams, caches), headers={"Content-Type": metrics.CONTENT_TYPE})


def _model(model_id: str, state: ProxyState) -> Model:
    return Model(id=model_id, created=int(state.started), owned_by="oaiproxy")


async def list_models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json_response(ModelList(data=[_model(m, state) for m in state.all_model_ids]))


async def get_model(request: web.Request) -> web.Response:
    state = request.app[STATE]
    model_id = request.match_info["model_id"]
    if model_id not in state.all_model_ids:
        raise NotFound(f"model '{model_id}' does not exist; this server serves "
                       + ", ".join(f"'{m}'" for m in state.all_model_ids), param="model", code="model_not_found")
    return json_response(_model(model_id, state))


def _deadline(request: web.Request) -> float:
    return asyncio.get_running_loop().time() + request.app[STATE].request_timeout


def _timed_out(request: web.Request) -> UpstreamTimeout:
    limit = request.app[STATE].request_timeout
    return UpstreamTimeout(f"the request took longer than the server's limit of {limit:g} s (--request-timeout) "
                           "and was cancelled", code="request_timeout")


async def _within(request: web.Request, deadline: float, work: Awaitable[Any]) -> Any:
    """Await ``work`` until ``deadline``; cancelling it closes its llama-server requests, which frees the slots."""
    try:
        async with asyncio.timeout_at(deadline):
            return await work
    except TimeoutError:
        raise _timed_out(request) from None


async def stream_sse(request: web.Request, stream: AsyncGenerator[BaseModel, None],
                     deadline: float) -> web.StreamResponse:
    """Send ``stream`` as server-sent events in the API's :class:`Wire` (OpenAI's end in ``data: [DONE]``).

    The first item is awaited before the 200 goes out, so planning and upstream
    refusals are still plain HTTP errors; later failures, the request timeout
    included, become one error event before the end of the stream.
    """
    try:
        async with asyncio.timeout_at(deadline):
            first = await anext(stream)
    except TimeoutError:
        await stream.aclose()
        raise _timed_out(request) from None
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    wire = wire_for(request.path)
    last = first.model_dump(mode="json")
    try:
        async with asyncio.timeout_at(deadline):
            await response.write(wire.event(last))
            async for chunk in stream:
                last = chunk.model_dump(mode="json")
                await response.write(wire.event(last))
    except TimeoutError:
        exc = _timed_out(request)
        metrics.note_error(exc.code or exc.type)
        log.warning("stream ended by error: %s", exc.message)
        await response.write(wire.error_event(exc, last))
    except APIError as exc:
        metrics.note_error(exc.code or exc.type)
        log.warning("stream ended by error: %s", exc.message)
        await response.write(wire.error_event(exc, last))
    finally:
        await stream.aclose()
    if wire.end:
        await response.write(wire.end)
    await response.write_eof()
    return response


def api_route(route: APIRoute) -> Handler:
    """``route`` as an aiohttp handler: the deadline starts before the body is read; a streamed reply
    goes out as SSE, any other is awaited within the deadline and sent as JSON."""

    async def handler(request: web.Request) -> web.StreamResponse:
        deadline = _deadline(request)
        reply = await route(request, request.app[STATE], await read_json(request))
        if isinstance(reply, AsyncGenerator):
            return await stream_sse(request, reply, deadline)
        result = await _within(request, deadline, reply)
        return json_response(result.model_dump(mode="json"))

    return handler


async def plain_root(request: web.Request) -> web.Response:
    """``POST /``, PikoBrain's plain interface (:mod:`oaiproxy.api.plain.routes`), within the deadline."""
    completion, context, start = await _within(request, _deadline(request), plain(request, request.app[STATE]))
    return answer(completion, context, start)


def thread_route(route: Callable[[web.Request, ProxyState], Awaitable[web.Response]]) -> Handler:
    """A ``/<thread>`` route (:mod:`oaiproxy.api.plain.threads`), or a UI one, within the request's deadline."""

    async def handler(request: web.Request) -> web.Response:
        response: web.Response = await _within(request, _deadline(request), route(request, request.app[STATE]))
        return response

    return handler


async def list_tools(request: web.Request) -> web.Response:
    """``GET /v1/tools``: the server tools loaded, where from, what failed, and the brains."""
    catalog = request.app[STATE].catalog
    if catalog is None:
        return json_response({"object": "list", "file": None, "sources": [], "data": [], "brains": []})
    return json_response(catalog.listing())


def _pool(request: web.Request) -> UpstreamPool:
    client = request.app[STATE].client
    if not isinstance(client, UpstreamPool):
        raise NotFound("this proxy has one upstream: --replicas or a repeated --endpoint make a pool to drain "
                       "upstreams of", code="not_found")
    return client


def _named_member(request: web.Request) -> str:
    pool = _pool(request)
    name = request.match_info["name"]
    if pool.member(name) is None:
        raise NotFound(f"no upstream '{name}'; the upstreams are " + ", ".join(m.name for m in pool.members),
                       param="name", code="upstream_not_found")
    return name


async def list_upstreams(request: web.Request) -> web.Response:
    """``GET /admin/upstreams``: every upstream of the pool, its state and in-flight generations."""
    return json_response({"object": "list", "data": _pool(request).views()})


async def drain_upstream(request: web.Request) -> web.Response:
    """``POST /admin/upstreams/{name}/drain``: no new generation goes there; ``?wait=SECONDS`` answers once its
    running ones are done (or the wait is over: ``drained`` says which)."""
    name = _named_member(request)
    pool = _pool(request)
    member = pool.drain(name)
    try:
        wait = float(request.query.get("wait", "0"))
    except ValueError:
        raise BadRequest("wait must be a number of seconds", param="wait") from None
    if wait > 0:
        await pool.drained(name, min(wait, request.app[STATE].request_timeout))
    return json_response({**member.view(), "drained": member.in_flight == 0})


async def resume_upstream(request: web.Request) -> web.Response:
    """``POST /admin/upstreams/{name}/resume``: back in rotation (once healthy)."""
    return json_response(_pool(request).resume(_named_member(request)).view())


async def openapi_json(request: web.Request) -> web.Response:
    from oaiproxy.api.openapi import openapi_document  # built on first use: it walks every pydantic model

    return json_response(openapi_document())


def create_app(state: ProxyState, *, max_body_bytes: int) -> web.Application:
    app = web.Application(middlewares=[request_middleware, cors_middleware, errors_middleware, auth_middleware,
                                       models_middleware],
                          client_max_size=max_body_bytes)
    app[STATE] = state
    app[MAX_BODY] = max_body_bytes
    app.on_response_prepare.append(add_cors_headers)
    app.on_response_prepare.append(add_request_id)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_text)  # guarded by --api-key, as every route but OPEN_PATHS
    app.router.add_post("/", plain_root)
    app.router.add_get("/v1/tools", list_tools)
    # the pool's upstreams (--replicas, a repeated --endpoint), guarded by --api-key
    app.router.add_get("/admin/upstreams", list_upstreams)
    app.router.add_post("/admin/upstreams/{name}/drain", drain_upstream)
    app.router.add_post("/admin/upstreams/{name}/resume", resume_upstream)
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id:.+}", get_model)
    app.router.add_post("/v1/chat/completions", api_route(chat_completions))
    app.router.add_post("/v1/completions", api_route(completions))
    app.router.add_post("/v1/embeddings", api_route(embeddings))
    app.router.add_post("/v1/messages", api_route(messages))
    app.router.add_post("/v1/messages/count_tokens", api_route(count_tokens))
    app.router.add_post("/v1/responses", api_route(create_response))
    app.router.add_get("/v1/responses/{response_id}", get_response)
    app.router.add_delete("/v1/responses/{response_id}", delete_response)
    app.router.add_get("/v1/responses/{response_id}/input_items", list_input_items)
    app.router.add_post("/v1/conversations", api_route(create_conversation))
    app.router.add_get("/v1/conversations/{conversation_id}", get_conversation)
    app.router.add_post("/v1/conversations/{conversation_id}", api_route(update_conversation))
    app.router.add_delete("/v1/conversations/{conversation_id}", delete_conversation)
    app.router.add_post("/v1/conversations/{conversation_id}/items", api_route(create_items))
    app.router.add_get("/v1/conversations/{conversation_id}/items", list_items)
    app.router.add_get("/v1/conversations/{conversation_id}/items/{item_id}", get_item)
    app.router.add_delete("/v1/conversations/{conversation_id}/items/{item_id}", delete_item)
    # the operator UI (oaiproxy/api/ui): its page, its files and its JSON
    watch_log()
    app.router.add_get("/", to_ui)
    app.router.add_get("/ui", index)
    app.router.add_static("/ui/static", UI_STATIC)
    app.router.add_get("/ui/api/status", thread_route(status))
    app.router.add_get("/ui/api/threads", thread_route(list_threads))
    app.router.add_post("/ui/api/grammar", thread_route(grammar))
    app.router.add_post("/ui/api/grammar/sample", thread_route(sample))
    app.router.add_post("/ui/api/chat", api_route(inspected_chat))
    # last: the proxy's own routes above match first (a thread cannot be named after them)
    for method, route in (("POST", run_thread), ("PUT", add_to_thread), ("GET", read_thread),
                          ("DELETE", delete_thread)):
        app.router.add_route(method, "/{thread}", thread_route(route))
    return app


__all__ = ["ANTHROPIC_WIRE", "OPENAI_WIRE", "RESPONSES_WIRE", "ProxyState", "Reply", "Wire", "allowed_origin",
           "create_app", "wire_for"]
