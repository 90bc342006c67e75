"""PikoBrain's threads: ``POST /<thread>`` adds and runs, ``PUT`` only adds, ``GET`` reads, ``DELETE`` forgets.

The body is read as ``POST /`` reads it (:func:`oaiproxy.api.plain.routes.read_messages`: text, JSON,
form, multipart with ``X-Role``/``X-User``), but may be empty: ``POST /<thread>`` then runs on what the
thread holds. A run gives the brain the thread's history (its latest ``history_depth`` messages, cut by
the brain as on every request), then the request's messages, and answers as ``POST /`` does.

What is kept, and when (docs/store.md): the request's messages, the server-tool steps of the run (the
assistant's calls and the ``tool`` results, as messages) and the answer (with the run's token counts)
are committed together once the run succeeded; a run that fails or is cancelled leaves the thread as it
was. Runs on one thread wait for each other in this process; a second proxy on the same database that
appended meanwhile makes the commit fail with a 409 ``thread_busy`` naming ``thread``.
"""

from __future__ import annotations

import re
import time
from datetime import UTC
from typing import TYPE_CHECKING, Any

from aiohttp import web

from oaiproxy.api.chat.protocol import ChatCompletion
from oaiproxy.api.paging import PAGE_DEFAULT, PAGE_MAX, query_limit, query_order
from oaiproxy.api.plain.routes import answer, brain_for, check_last, read_messages, run
from oaiproxy.errors import BadRequest, NotFound
from oaiproxy.server_tools.brains import recent
from oaiproxy.store import Store
from oaiproxy.store.threads import History, NewMessage, StoredMessage

if TYPE_CHECKING:
    from oaiproxy.api.app import ProxyState

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: the most messages a run reads when no brain cuts the history (a brain's ``history_depth`` is at most this)
MAX_HISTORY = 10_000


def reserved_names(app: web.Application) -> set[str]:
    """The first path segments of the proxy's own routes (``v1``, ``health``, ``openapi.json``...)."""
    names = set()
    for resource in app.router.resources():
        first = resource.canonical.lstrip("/").split("/", 1)[0]
        if first and "{" not in first:
            names.add(first)
    return names


def thread_name(request: web.Request) -> str:
    """The thread the path names: a 400 naming ``thread`` unless it is a valid name and not one of the routes'."""
    name = request.match_info["thread"]
    if not NAME.match(name):
        raise BadRequest(f"thread {name!r} is not a thread name: 1-128 letters, digits, '.', '_' or '-', starting "
                         "with a letter or digit", param="thread", code="invalid_value")
    if name in reserved_names(request.app):
        raise BadRequest(f"thread {name!r}: the name is one of the proxy's own routes; choose another",
                         param="thread", code="reserved_name")
    return name


def store_of(state: ProxyState) -> Store:
    if state.store is None:
        raise BadRequest("threads need the store, and this server runs without one", param="thread",
                         code="store_disabled")
    return state.store


def as_chat(message: StoredMessage) -> dict[str, Any]:
    """A stored message as the model reads it (``user`` is for audit, not the model)."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = message.tool_calls
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def run_messages(completion: ChatCompletion) -> list[NewMessage]:
    """What a run adds after the request's messages: its server-tool steps, then the answer with the run's tokens."""
    added = []
    for step in completion.steps or []:
        if step.type == "tool_calls":
            added.append(NewMessage(role="assistant", tool_calls=[c.model_dump(mode="json")
                                                                  for c in step.tool_calls or []]))
        else:
            added += [NewMessage(role="tool", tool_call_id=r.tool_call_id, content_type=r.content_type or "text/plain",
                                 content=f"Error: {r.content}" if r.is_error else r.content)
                      for r in step.results or []]
    message = completion.choices[0].message
    calls = [c.model_dump(mode="json") for c in message.tool_calls] if message.tool_calls else None
    added.append(NewMessage(role="assistant", content=message.content or "", tool_calls=calls,
                            reasoning=message.reasoning_content, input_tokens=completion.usage.prompt_tokens,
                            output_tokens=completion.usage.completion_tokens))
    return added


def _new(messages: list[dict[str, Any]], user: str | None) -> list[NewMessage]:
    return [NewMessage(role=m["role"], content=m["content"], user=user) for m in messages]


async def run_thread(request: web.Request, state: ProxyState) -> web.Response:
    """``POST /<thread>``: the history and the request's messages run together; all of it kept once it succeeded."""
    start = time.monotonic()
    name = thread_name(request)
    store = store_of(state)
    messages, user = await read_messages(request, optional=True)
    brain = brain_for(request, state)
    depth = state.catalog.snapshot.brains[brain].history_depth if brain is not None and state.catalog else None
    async with store.threads.lock(name):
        history = await store.threads.history(name, depth or MAX_HISTORY)
        given = [as_chat(m) for m in history.messages] + messages
        if not given:
            raise BadRequest(f"thread {name!r} has no messages and the request no text: send the question as "
                             "the body", param="body", code="empty_body")
        check_last(given)
        completion = await run(state, brain, given, user, trim=True)
        await store.threads.append(name, history, _new(messages, user) + run_messages(completion), user=user)
    context = len(recent([m for m in given if m["role"] != "system"], depth)) if depth else len(given)
    return answer(completion, context, start)


async def add_to_thread(request: web.Request, state: ProxyState) -> web.Response:
    """``PUT /<thread>``: append the request's messages, run nothing; 200 with the thread's size."""
    name = thread_name(request)
    store = store_of(state)
    messages, user = await read_messages(request, optional=True)
    if not messages:
        raise BadRequest("the request has no text: send the message(s) to add as the body", param="body",
                         code="empty_body")
    async with store.threads.lock(name):
        history: History = await store.threads.history(name, 0)
        added = await store.threads.append(name, history, _new(messages, user), user=user)
    return web.json_response({"object": "thread.messages.added", "thread": name, "added": len(added),
                              "first_position": added[0].position, "last_position": added[-1].position})


def message_json(message: StoredMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"id": message.position, "object": "thread.message", "position": message.position,
                           "role": message.role, "content": message.content, "content_type": message.content_type,
                           "user": message.user,
                           "created_at": int(message.created_at.astimezone(UTC).timestamp())}
    if message.tool_calls:
        out["tool_calls"] = message.tool_calls
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.reasoning:
        out["reasoning"] = message.reasoning
    if message.input_tokens is not None or message.output_tokens is not None:
        out["usage"] = {"input_tokens": message.input_tokens, "output_tokens": message.output_tokens}
    return out


def _position(request: web.Request, key: str) -> int | None:
    raw = request.query.get(key)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"'{key}' must be a message position (an integer), not {raw!r}", param=key,
                         code="invalid_value") from None


def _unknown(name: str) -> NotFound:
    return NotFound(f"thread {name!r} not found: nothing was ever added to it, or it was deleted", param="thread",
                    code="thread_not_found")


async def read_thread(request: web.Request, state: ProxyState) -> web.Response:
    """``GET /<thread>``: one page of its messages, OpenAI's list shape; ``id`` is the message's position."""
    name = thread_name(request)
    store = store_of(state)
    limit = query_limit(request, PAGE_DEFAULT, PAGE_MAX)
    order = query_order(request, "asc")
    page = await store.threads.page(name, limit=limit, after=_position(request, "after"),
                                    before=_position(request, "before"), descending=order == "desc")
    if page is None:
        raise _unknown(name)
    data = [message_json(m) for m in page.messages]
    return web.json_response({"object": "list", "thread": name, "data": data,
                              "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None, "has_more": page.has_more})


async def delete_thread(request: web.Request, state: ProxyState) -> web.Response:
    """``DELETE /<thread>``: forget it and its messages (a run on it meanwhile then fails with a 409)."""
    name = thread_name(request)
    store = store_of(state)
    if not await store.threads.delete(name):
        raise _unknown(name)
    return web.json_response({"id": name, "object": "thread.deleted", "deleted": True})


__all__ = ["add_to_thread", "delete_thread", "read_thread", "reserved_names", "run_thread", "thread_name"]
