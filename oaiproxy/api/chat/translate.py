"""A Chat Completions request as the one :class:`Conversation` every later stage reads.

Only the translation lives here: content parts flattened to text, ``developer`` as
``system``, tools and ``response_format`` in the conversation's terms. The rules the
result must satisfy are :func:`oaiproxy.conversation.checks.check_conversation`'s, the
same for every API surface.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oaiproxy.api.chat.protocol import ChatCompletionRequest
from oaiproxy.conversation.checks import check_conversation
from oaiproxy.conversation.model import Conversation, NamedToolChoice, ResponseFormat, ToolChoice, ToolSpec
from oaiproxy.errors import BadRequest


def _messages(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i, msg in enumerate(req.messages):
        try:
            text = msg.text()
        except BadRequest as exc:
            exc.param = f"messages[{i}].content"
            raise
        role = "system" if msg.role == "developer" else msg.role
        out: dict[str, Any] = {"role": role, "content": text}
        if msg.name:
            out["name"] = msg.name
        if msg.tool_calls:
            out["tool_calls"] = [
                {"id": tc.id, "type": "function", "function": {"name": tc.function.name,
                                                               "arguments": tc.function.arguments}}
                for tc in msg.tool_calls
            ]
        if msg.tool_call_id:
            out["tool_call_id"] = msg.tool_call_id
        reasoning = msg.reasoning_text()
        if reasoning is not None and msg.role == "assistant":
            out["reasoning_content"] = reasoning
        messages.append(out)
    return messages


def _response_format(req: ChatCompletionRequest) -> ResponseFormat:
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return ResponseFormat()
    js = fmt.json_schema
    schema = js.schema_ if js is not None and js.schema_ is not None else None
    return ResponseFormat(type=fmt.type, schema=schema,  # type: ignore[arg-type]
                          name=js.name if js else None, strict=bool(js.strict) if js else False)


def to_conversation(req: ChatCompletionRequest, *, tool_extra_keys: bool = False,
                    server_tools: Sequence[ToolSpec] = ()) -> Conversation:
    """The request as a checked :class:`Conversation` (a :class:`BadRequest` naming the field otherwise).

    ``tool_extra_keys`` (the ``--tool-extra-keys`` setting) lets tool arguments carry keys a
    schema does not declare where it omits ``additionalProperties``; by default an object
    that declares ``properties`` admits only those (small models invent keys otherwise).
    ``server_tools`` (the proxy runs them, :mod:`oaiproxy.server_tools`) come after the client's own.
    """
    tools = [
        ToolSpec.from_request(t.function.name, t.function.description, t.function.parameters, t.function.strict,
                              extra_keys=tool_extra_keys)
        for t in req.tools or []
    ]
    clients = {t.name: i for i, t in enumerate(tools)}
    for spec in server_tools:
        if spec.name in clients:
            raise BadRequest(f"tool '{spec.name}' is also a server tool of this request; rename the client's tool",
                             param=f"tools[{clients[spec.name]}].function.name")
    tools += server_tools
    choice: ToolChoice
    if req.tool_choice is None:
        choice = "auto" if tools else "none"
    elif isinstance(req.tool_choice, str):
        choice = req.tool_choice
    else:
        choice = NamedToolChoice(req.tool_choice.function.name)
    return check_conversation(Conversation(messages=_messages(req), tools=tools, tool_choice=choice,
                                           parallel_tool_calls=req.parallel_tool_calls,
                                           response_format=_response_format(req),
                                           reasoning_effort=req.reasoning_effort,
                                           template_kwargs=dict(req.chat_template_kwargs or {})))


__all__ = ["to_conversation"]
