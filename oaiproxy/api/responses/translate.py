"""A Responses request as the one :class:`Conversation` every later stage reads.

Only the translation lives here: ``instructions`` as the system message, ``input``
items as messages (a run of ``function_call`` items becomes one assistant turn with
its ``tool_calls``, a ``function_call_output`` a ``tool`` message, a ``reasoning``
item the next assistant turn's reasoning), flat function tools, ``tool_choice``
(``allowed_tools`` narrows the tools), and ``text.format`` as the response format.
The rules are :func:`oaiproxy.conversation.checks.check_conversation`'s, as for every
surface; its Chat Completions field names are renamed to this API's
(``tools[2].parameters``, ``input[4].arguments``) so the client's error points at
what it sent. A stored chain's items (``previous_response_id``), or a conversation's (``conversation``), come
first, as history after the instructions; an error in them names that field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from oaiproxy.api.responses.protocol import (
    AllowedTools,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionToolChoice,
    InputItem,
    MessageItem,
    ReasoningItem,
    ResponsesRequest,
)
from oaiproxy.conversation.checks import check_conversation
from oaiproxy.conversation.model import Conversation, NamedToolChoice, ResponseFormat, ToolChoice, ToolSpec
from oaiproxy.errors import BadRequest

#: where each conversation message came from: the ``input`` index, or the field it came from otherwise
#: (``instructions``, ``previous_response_id`` for a stored chain's items)
Sources = list[int | str]


def input_items(req: ResponsesRequest) -> list[InputItem]:
    """``input`` as items: a string is one user message."""
    return [MessageItem(role="user", content=req.input)] if isinstance(req.input, str) else list(req.input)


def _messages(req: ResponsesRequest, history: Sequence[InputItem],
              history_param: str = "previous_response_id") -> tuple[list[dict[str, Any]], Sources]:
    messages: list[dict[str, Any]] = []
    sources: Sources = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
        sources.append("instructions")
    reasoning: str | None = None
    #: the assistant message the next function_call items join (None once another kind of item came)
    open_turn: dict[str, Any] | None = None
    items = [*history, *input_items(req)]
    for n, item in enumerate(items):
        i: int | str = n - len(history) if n >= len(history) else history_param
        if isinstance(item, MessageItem):
            try:
                text = item.text()
            except BadRequest as exc:
                exc.param = _field(i, "content")
                raise
            msg: dict[str, Any] = {"role": "system" if item.role == "developer" else item.role, "content": text}
            open_turn = None
            if item.role == "assistant":
                if reasoning is not None:
                    msg["reasoning_content"], reasoning = reasoning, None
                open_turn = msg
            messages.append(msg)
            sources.append(i)
        elif isinstance(item, FunctionCallItem):
            if open_turn is None:
                open_turn = {"role": "assistant", "content": ""}
                if reasoning is not None:
                    open_turn["reasoning_content"], reasoning = reasoning, None
                messages.append(open_turn)
                sources.append(i)
            open_turn.setdefault("tool_calls", []).append(
                {"id": item.call_id, "type": "function",
                 "function": {"name": item.tool_name(), "arguments": item.arguments}})
        elif isinstance(item, FunctionCallOutputItem):
            try:
                text = item.text()
            except BadRequest as exc:
                exc.param = _field(i, "output")
                raise
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": text})
            sources.append(i)
            open_turn = None
        elif isinstance(item, ReasoningItem):
            reasoning = item.text()
    return messages, sources


def _field(source: int | str, name: str) -> str:
    """``input[3].content``, or the field a message came from when it is not an ``input`` item."""
    return f"input[{source}].{name}" if isinstance(source, int) else source


def _response_format(req: ResponsesRequest) -> ResponseFormat:
    fmt = req.text.format if req.text is not None else None
    if fmt is None or fmt.type == "text":
        return ResponseFormat()
    if fmt.type == "json_schema" and fmt.schema_ is None:
        raise BadRequest("text.format of type 'json_schema' needs a 'schema'", param="text.format.schema",
                         code="invalid_value")
    schema = fmt.schema_ if isinstance(fmt.schema_, dict) else None
    return ResponseFormat(type=fmt.type, schema=schema, name=fmt.name, strict=bool(fmt.strict))


def _tools_and_choice(req: ResponsesRequest, tool_extra_keys: bool) -> tuple[list[ToolSpec], ToolChoice]:
    tools = [ToolSpec.from_request(t.name, t.description, t.parameters, t.strict, extra_keys=tool_extra_keys)
             for t in req.function_tools()]
    choice = req.tool_choice
    if choice is None:
        return tools, "auto" if tools else "none"
    if isinstance(choice, str):
        return tools, choice
    if isinstance(choice, FunctionToolChoice):
        return tools, NamedToolChoice(choice.name)
    assert isinstance(choice, AllowedTools)
    allowed = {t.name for t in choice.tools}
    unknown = sorted(allowed - {t.name for t in tools})
    if unknown:
        raise BadRequest(f"tool_choice.tools names {', '.join(unknown)}, which is not in 'tools'",
                         param="tool_choice.tools", code="invalid_value")
    return [t for t in tools if t.name in allowed], choice.mode


_MESSAGE_PARAM = re.compile(r"^messages\[(\d+)\](?:\.tool_calls\[(\d+)\]\.function)?")
_TOOL_PARAM = re.compile(r"^tools\[(\d+)\]\.function")
#: the shared checks' names for what this API spells otherwise
_RENAMED = {"reasoning_effort": "reasoning.effort"}


def _renamed(param: str | None, sources: Sources, tool_fields: list[str], req: ResponsesRequest) -> str | None:
    """A Chat Completions field name from the shared checks, as this API names it (``tool_fields``: where the
    request declares each of the conversation's tools)."""
    if param is None:
        return None
    if param in _RENAMED:
        return _RENAMED[param]
    param = _TOOL_PARAM.sub(lambda m: tool_fields[int(m.group(1))], param)
    found = _MESSAGE_PARAM.match(param)
    if found:
        source = sources[int(found.group(1))]
        if isinstance(source, str):
            return source
        where = f"input[{source}]"
        if found.group(2) is not None:
            # the j-th call of a turn is the j-th function_call item from the turn's first one
            where = f"input[{source + int(found.group(2))}]"
        return where + param[found.end():]
    return param


def to_conversation(req: ResponsesRequest, *, history: Sequence[InputItem] = (),
                    tool_extra_keys: bool = False, history_param: str = "previous_response_id") -> Conversation:
    """The request as a checked :class:`Conversation` (a :class:`BadRequest` naming this API's field otherwise);
    ``history``: the items of the stored chain (or the conversation, ``history_param``) it continues."""
    messages, sources = _messages(req, history, history_param)
    if not messages:
        raise BadRequest("'input' holds no message", param="input", code="invalid_value")
    tools, choice = _tools_and_choice(req, tool_extra_keys)
    conv = Conversation(messages=messages, tools=tools, tool_choice=choice,
                        parallel_tool_calls=req.parallel_tool_calls, response_format=_response_format(req))
    if req.reasoning is not None and req.reasoning.effort is not None:
        # OpenAI's "xhigh" asks for more than "high"; the engine's budgets stop at "high"
        conv.reasoning_effort = "high" if req.reasoning.effort == "xhigh" else req.reasoning.effort
    try:
        return check_conversation(conv)
    except BadRequest as exc:
        fields = req.tool_fields()
        renamed = _renamed(exc.param, sources, [fields[t.name] for t in conv.tools], req)
        if renamed != exc.param and exc.param is not None and renamed is not None:
            exc.message = exc.message.replace(exc.param, renamed)
            exc.param = renamed
        raise


__all__ = ["input_items", "to_conversation"]
