"""``POST /``: PikoBrain's plain interface, for callers that are not OpenAI clients (curl, scripts).

The body is the question: ``text/plain`` (or no content type: UTF-8 text), ``application/json``
(its text, as PikoBrain takes it), ``application/x-www-form-urlencoded`` (the decoded values, one
message each), or ``multipart/form-data``, whose parts are messages in order, each with an optional
``X-Role`` (``user``, the default, or ``assistant``) and ``X-User``; the ``user`` and ``role``
query parameters give the defaults. ``?brain=NAME`` picks a brain (default: the tools file's first;
none: the served model without tools).

The messages become one Chat Completions request to that brain, so the loop, the grammar and every
check are the same as on ``/v1/chat/completions``. The answer is the response body (``text/plain``),
with PikoBrain's headers: ``X-Run-Duration`` (seconds), ``X-Run-Context`` (messages in),
``X-Run-Input-Tokens``, ``X-Run-Output-Tokens``, ``X-Run-Total-Tokens``. Errors are OpenAI's error JSON.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from oaiproxy.api.chat.protocol import ChatCompletion, ChatCompletionRequest
from oaiproxy.api.protocol import parse_request
from oaiproxy.errors import BadRequest, NotFound
from oaiproxy.server_tools.plan import LoopPlan, plan_loop

if TYPE_CHECKING:
    from oaiproxy.api.app import ProxyState

ROLES = ("user", "assistant")
#: image types PikoBrain accepts: refused here with a clear 400 until a vision model can be configured
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")


def _role(value: str | None, where: str) -> str:
    role = (value or "user").strip().lower()
    if role not in ROLES:
        raise BadRequest(f"{where}: role {value!r} is not 'user' or 'assistant'", param=where, code="invalid_value")
    return role


def _text(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{where} is not UTF-8 text", param=where, code="invalid_value") from None


def _refuse_image(content_type: str, where: str) -> None:
    if content_type.startswith("image/"):
        raise BadRequest(f"{where} is an image ({content_type}): this server has no vision model (a vision GGUF "
                         "with --mmproj is not supported yet); send text", param=where, code="unsupported_content")


async def read_messages(request: web.Request, *, optional: bool = False) -> tuple[list[dict[str, Any]], str | None]:
    """The request's messages (OpenAI-shaped) and its user, in the order the caller sent them.

    ``optional``: a thread's request, which may bring no text (it runs on the history) and may end with
    an assistant message (the checks on what the model is given are then the caller's).
    """
    user = request.query.get("user")
    role = _role(request.query.get("role"), "role")
    ctype = request.content_type if request.headers.get("Content-Type") else "text/plain"
    if ctype == "multipart/form-data":
        messages, user = await _multipart_messages(request, role, user)
    else:
        _refuse_image(ctype, "body")
        raw = await request.read()
        if ctype == "application/x-www-form-urlencoded":
            texts = [v for _, v in parse_qsl(_text(raw, "body"), keep_blank_values=False)]
        else:
            texts = [_text(raw, "body")]
        messages = [{"role": role, "content": t} for t in texts if t.strip()]
    if not optional:
        check_last(messages)
    return messages, user


async def _multipart_messages(request: web.Request, role: str,
                              user: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """A multipart body's parts as messages, in order; a body aiohttp cannot read is a 400 naming what is wrong.

    aiohttp refuses a missing or overlong boundary, a body that never opens with it, broken part headers and
    an unknown transfer encoding with ValueError, RuntimeError or its HTTP parser's errors: the client's
    mistakes, not the proxy's.
    """
    try:
        reader = await request.multipart()
    except ValueError as exc:
        raise BadRequest(f"Content-Type: multipart/form-data needs a valid boundary ({exc})", param="Content-Type",
                         code="invalid_value") from None
    try:
        return await _read_parts(reader, role, user)
    except (ValueError, RuntimeError, HttpProcessingError) as exc:
        raise BadRequest(f"the multipart body cannot be read: {exc}", param="body", code="invalid_value") from None


async def _read_parts(reader: MultipartReader, role: str,
                      user: str | None) -> tuple[list[dict[str, Any]], str | None]:
    messages: list[dict[str, Any]] = []
    i = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise BadRequest(f"part {i}: nested multipart is not supported", param=f"part[{i}]")
        where = f"part[{i}]"
        part_type = (part.headers.get("Content-Type") or "text/plain").split(";")[0].strip().lower()
        _refuse_image(part_type, where)
        raw = await part.read(decode=True)
        if part_type == "application/x-www-form-urlencoded":
            texts = [v for _, v in parse_qsl(_text(raw, where), keep_blank_values=False)]
        else:
            texts = [_text(raw, where)]
        part_role = _role(part.headers.get("X-Role") or role, f"{where}.X-Role")
        user = part.headers.get("X-User") or user
        messages += [{"role": part_role, "content": t} for t in texts if t]
        i += 1
    return messages, user


def check_last(messages: list[dict[str, Any]]) -> None:
    """What the model is given must end with the user's message."""
    if not messages:
        raise BadRequest("the request has no text: send the question as the body", param="body", code="empty_body")
    if messages[-1]["role"] != "user":
        raise BadRequest("the last message must be the user's (X-Role: user)", param="X-Role", code="invalid_value")


def brain_for(request: web.Request, state: ProxyState) -> str | None:
    """The brain named by ``?brain=``, else the first one declared; None: no brains (the plain model)."""
    names = state.brain_names
    wanted = request.query.get("brain")
    if wanted is None:
        return names[0] if names else None
    if wanted not in names:
        raise NotFound(f"brain {wanted!r} does not exist" + (f"; this server has {', '.join(names)}" if names
                                                              else "; this server has no brains (--tools)"),
                       param="brain", code="model_not_found")
    return wanted


async def plain(request: web.Request, state: ProxyState) -> tuple[ChatCompletion, int, float]:
    """The answer to a plain request, how many messages went in, and when it started."""
    start = time.monotonic()
    messages, user = await read_messages(request)
    return await run(state, brain_for(request, state), messages, user), len(messages), start


async def run(state: ProxyState, brain: str | None, messages: list[dict[str, Any]], user: str | None, *,
              trim: bool = False) -> ChatCompletion:
    """``messages`` as one Chat Completions request to ``brain`` (None: the served model), its loop included;
    ``trim``: the oldest turns go until the prompt fits the context (a stored thread's), brain or not."""
    req: ChatCompletionRequest = parse_request(ChatCompletionRequest, {
        "model": brain, "messages": messages, **({"user": user} if user else {})})
    loop = plan_loop(state.tools_snapshot, brain, None)
    if loop is None and trim:
        loop = LoopPlan(tools=[], trim=True)
    return await (await state.serving(None)).engine.complete(req, loop)


def answer(completion: ChatCompletion, context: int, start: float) -> web.Response:
    """The answer's text as the body, with PikoBrain's X-Run headers."""
    usage = completion.usage
    message = completion.choices[0].message
    return web.Response(text=message.content or "", content_type="text/plain", charset="utf-8", headers={
        "X-Run-Duration": f"{time.monotonic() - start:.3f}",
        "X-Run-Context": str(context),
        "X-Run-Input-Tokens": str(usage.prompt_tokens),
        "X-Run-Output-Tokens": str(usage.completion_tokens),
        "X-Run-Total-Tokens": str(usage.total_tokens),
    })


__all__ = ["answer", "brain_for", "check_last", "plain", "read_messages", "run"]
