"""OpenAI's pre-tools fields, ``functions`` and ``function_call``, on top of tool calling.

Older clients and frameworks still send ``functions`` (a list of function
definitions) and ``function_call`` (``"none"``, ``"auto"`` or ``{"name": ...}``),
and history in the same shape: an assistant message with one
``function_call`` and no id, answered by a ``role: "function"`` message that
names the function. Dropping them would leave such a client without tools and
without a word of why, so they are translated here, at the protocol layer,
and the engine only ever sees ``tools``:

- request: ``functions`` → ``tools``, ``function_call`` → ``tool_choice``,
  parallel calls off (the legacy answer holds one call at most);
- history: ``function_call`` → ``tool_calls`` with a made-up id, stable for a
  given position in the conversation (so a growing conversation renders the
  same prompt prefix, and llama-server's prompt cache keeps working), and a
  ``function`` message → a ``tool`` message answering that id;
- answer: ``message.function_call`` instead of ``tool_calls`` and finish reason
  ``function_call``, streamed as ``delta.function_call`` chunks, as OpenAI does.

Errors found while planning name the fields the client sent (``functions[2]``,
``function_call``), not the ``tools`` they were translated into.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, TypeVar

from oaiproxy.api.chat.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    DeltaFunction,
    Message,
    MessageToolCall,
    NamedToolChoiceModel,
    ResponseFunction,
    Tool,
)
from oaiproxy.errors import APIError, BadRequest, InternalError

log = logging.getLogger("oaiproxy.legacy_functions")

T = TypeVar("T")


def legacy_call_id(message_index: int) -> str:
    """The id given to the legacy call in history message ``message_index``.

    Nine alphanumerics (``call00003``): Mistral's templates refuse any other id
    shape, and the position makes it the same in every later request of the
    conversation.
    """
    return f"call{message_index:05d}" if message_index < 100_000 else f"c{message_index:08d}"


def translate_history(messages: list[Message]) -> list[Message]:
    """Legacy ``function_call`` / ``function`` messages as ``tool_calls`` / ``tool`` messages; others as they are.

    A ``function`` message answers the latest call of the function it names; one
    that follows no such call still becomes a tool result (with an id of its own),
    as OpenAI's legacy API never required the pairing.
    """
    if not any(m.role == "function" or m.function_call is not None for m in messages):
        return messages
    latest: dict[str, str] = {}  # function name -> id of its latest call
    out: list[Message] = []
    for i, msg in enumerate(messages):
        if msg.function_call is not None:
            call_id = legacy_call_id(i)
            latest[msg.function_call.name] = call_id
            out.append(Message(role="assistant", content=msg.content, name=msg.name,
                               tool_calls=[MessageToolCall(id=call_id, function=msg.function_call)]))
        elif msg.role == "function":
            assert msg.name is not None  # Message's own check
            out.append(Message(role="tool", content=msg.content, name=msg.name,
                               tool_call_id=latest.pop(msg.name, None) or legacy_call_id(i)))
        else:
            for call in msg.tool_calls or []:
                latest[call.function.name] = call.id
            out.append(msg)
    return out


def to_tools_request(req: ChatCompletionRequest) -> ChatCompletionRequest:
    """The request with legacy fields translated to their tools equivalents (and their combination checked).

    Returns ``req`` itself when it has nothing legacy in it.
    """
    if req.functions is not None and req.tools is not None:
        raise BadRequest("send 'tools' or the legacy 'functions', not both", param="functions",
                         code="invalid_value")
    if req.function_call is not None and req.functions is None:
        raise BadRequest("'function_call' goes with the legacy 'functions'; with 'tools' use 'tool_choice'",
                         param="function_call", code="invalid_value")
    messages = translate_history(req.messages)
    if req.functions is None:
        return req if messages is req.messages else req.model_copy(update={"messages": messages})
    if req.tool_choice is not None:
        raise BadRequest("'tool_choice' goes with 'tools'; with the legacy 'functions' use 'function_call'",
                         param="tool_choice", code="invalid_value")
    if "parallel_tool_calls" in req.model_fields_set and req.parallel_tool_calls:
        raise BadRequest("parallel calls need 'tools': a legacy 'function_call' answer holds one call",
                         param="parallel_tool_calls", code="invalid_value")
    # names repeated or a function_call naming no function: the conversation's own checks, renamed by
    # legacy_param as any planning error is
    choice: Any = req.function_call
    if choice is not None and not isinstance(choice, str):
        choice = NamedToolChoiceModel(type="function", function=choice)
    return req.model_copy(update={
        "messages": messages,
        "tools": [Tool(type="function", function=fn) for fn in req.functions],
        "tool_choice": choice,
        "parallel_tool_calls": False,
    })


_TOOL_PARAM = re.compile(r"^tools\[(\d+)\](?:\.function)?")


def legacy_param(param: str | None) -> str | None:
    """A planning error's ``param`` in the legacy request's own terms."""
    if param is None:
        return None
    if param == "tool_choice" or param.startswith("tool_choice."):
        return "function_call" + param[len("tool_choice"):].replace(".function", "", 1)
    if param == "tools":
        return "functions"
    return _TOOL_PARAM.sub(lambda m: f"functions[{m.group(1)}]", param)


def _renamed(exc: APIError) -> APIError:
    exc.param = legacy_param(exc.param)
    return exc


async def complete(work: Awaitable[ChatCompletion]) -> ChatCompletion:
    """A non-streamed answer in the legacy shape: ``message.function_call``, finish reason ``function_call``."""
    try:
        result = await work
    except BadRequest as exc:
        raise _renamed(exc) from None
    for choice in result.choices:
        calls = choice.message.tool_calls or []
        if len(calls) > 1:
            log.error("BUG: %d tool calls with parallel calls off, answering a legacy 'functions' request",
                      len(calls))
            raise InternalError("the model produced more than one call with parallel calls off",
                                code="invalid_tool_call")
        if calls:
            choice.message.function_call = ResponseFunction(name=calls[0].function.name,
                                                            arguments=calls[0].function.arguments)
            choice.message.tool_calls = None
        if choice.finish_reason == "tool_calls":
            choice.finish_reason = "function_call"
    return result


async def stream(chunks: AsyncGenerator[ChatCompletionChunk, None]) -> AsyncGenerator[ChatCompletionChunk, None]:
    """A stream in the legacy shape: ``delta.function_call`` (name first, then arguments) for the one call."""
    try:
        async for chunk in chunks:
            for choice in chunk.choices:
                delta = choice.delta
                calls = delta.tool_calls or []
                if any(call.index != 0 for call in calls):
                    log.error("BUG: a second tool call with parallel calls off, streaming a legacy "
                              "'functions' answer")
                    raise InternalError("the model produced more than one call with parallel calls off",
                                        code="invalid_tool_call")
                if calls:
                    # OpenAI's first function_call delta carries the name and "" arguments, later ones
                    # only arguments: clients that concatenate need a string every time
                    delta.function_call = DeltaFunction(
                        name=next((c.function.name for c in calls if c.function.name), None),
                        arguments="".join(c.function.arguments or "" for c in calls))
                delta.tool_calls = None
                if choice.finish_reason == "tool_calls":
                    choice.finish_reason = "function_call"
            yield chunk
    except BadRequest as exc:
        raise _renamed(exc) from None
    finally:
        await chunks.aclose()
