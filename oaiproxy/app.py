"""The HTTP layer: aiohttp routes that translate between OpenAI's wire format and :mod:`oaiproxy.engine`.

No generation logic lives here: validate, call the engine, serialise, and turn
every failure into OpenAI's error JSON with the right status.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .engine import ChatEngine
from .errors import APIError, AuthenticationFailed, BadRequest, NotFound, UpstreamUnavailable, error_body
from .llama_server import ManagedServer
from .openai_types import ChatCompletionRequest, parse_request
from .upstream import LlamaServerClient

log = logging.getLogger("oaiproxy.app")

MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass
class ProxyState:
    """What the routes need; built by :mod:`oaiproxy.server`."""

    engine: ChatEngine
    client: LlamaServerClient
    model_ids: list[str]
    managed: ManagedServer | None = None
    api_key: str | None = None
    started: float = field(default_factory=time.time)


STATE = web.AppKey("state", ProxyState)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(data, ensure_ascii=False), status=status,
                        content_type="application/json", headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except APIError as exc:
        if exc.status >= 500:
            log.warning("%s %s -> %d: %s", request.method, request.path, exc.status, exc.message)
        return json_response(exc.body(), exc.status, exc.headers)
    except web.HTTPRequestEntityTooLarge as exc:
        return json_response(error_body(f"request body too large: the limit is {exc.max_size} bytes",
                                        param="body", code="request_too_large"), 413)
    except web.HTTPNotFound:
        return json_response(error_body(f"unknown route {request.method} {request.path}", code="not_found"), 404)
    except web.HTTPMethodNotAllowed as exc:
        return json_response(error_body(f"method {request.method} not allowed on {request.path}; "
                                        f"use {', '.join(sorted(exc.allowed_methods))}", code="method_not_allowed"),
                             405, {"Allow": ",".join(sorted(exc.allowed_methods))})
    except web.HTTPException:
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_response(error_body("internal error in oaiproxy; see its log", "server_error",
                                        code="internal_error"), 500)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.app[STATE].api_key
    if key and request.path.startswith("/v1/") and request.method != "OPTIONS":
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise AuthenticationFailed()
    return await handler(request)


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}", param="body", code="invalid_json") from None


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    upstream_ok = await state.client.health()
    managed = state.managed
    body = {
        "status": "ok" if upstream_ok else "unavailable",
        "upstream": {"url": state.client.base_url, "healthy": upstream_ok,
                     "state": managed.state if managed else ("ready" if upstream_ok else "unreachable"),
                     "managed": managed is not None,
                     "error": managed.last_error if managed else None},
        "model": state.model_ids[0],
        "style": state.engine.style.name,
        "uptime_s": round(time.time() - state.started, 1),
    }
    return json_response(body, 200 if upstream_ok else 503)


def _model_object(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "oaiproxy"}


async def list_models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json_response({"object": "list",
                          "data": [_model_object(state.model_ids[0], int(state.started))]})


async def get_model(request: web.Request) -> web.Response:
    state = request.app[STATE]
    model_id = request.match_info["model_id"]
    if model_id not in state.model_ids:
        raise NotFound(f"model '{model_id}' does not exist; this server serves '{state.model_ids[0]}'",
                       param="model", code="model_not_found")
    return json_response(_model_object(state.model_ids[0], int(state.started)))


def _check_model(state: ProxyState, model: str | None) -> None:
    if model is not None and model not in state.model_ids:
        raise NotFound(f"model '{model}' does not exist; this server serves '{state.model_ids[0]}'",
                       param="model", code="model_not_found")


def _check_upstream_state(state: ProxyState) -> None:
    managed = state.managed
    if managed is not None and managed.state != "ready":
        raise UpstreamUnavailable(
            f"llama-server is {managed.state}" + (f": {managed.last_error}" if managed.last_error else ""),
            headers={"Retry-After": "2"})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    req: ChatCompletionRequest = parse_request(ChatCompletionRequest, await read_json(request))
    _check_model(state, req.model)
    _check_upstream_state(state)
    if not req.stream:
        result = await state.engine.complete(req)
        return json_response(result.model_dump(mode="json", exclude_none=False))
    stream = state.engine.stream(req)
    # Plan before committing to a 200 so request errors are still plain 400s.
    first = await anext(stream)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    try:
        await response.write(_sse(first.model_dump(mode="json")))
        async for chunk in stream:
            await response.write(_sse(chunk.model_dump(mode="json")))
    except APIError as exc:
        log.warning("stream ended by error: %s", exc.message)
        await response.write(_sse(exc.body()))
    finally:
        await stream.aclose()
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


def create_app(state: ProxyState, *, max_body_bytes: int = MAX_BODY_BYTES) -> web.Application:
    app = web.Application(middlewares=[errors_middleware, auth_middleware], client_max_size=max_body_bytes)
    app[STATE] = state
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id:.+}", get_model)
    app.router.add_post("/v1/chat/completions", chat_completions)
    return app
