"""An OpenAI chat request reduced to the one conversation model every later stage reads.

Cross-field request rules (tool names unique, ``tool_choice`` naming a given
tool, schemas not nested without bound) are checked here, once, so that the
styles, the grammar and the validator can take the :class:`Conversation` as
given.
"""

from __future__ import annotations

from typing import Any

from .errors import BadRequest
from .openai_types import ChatCompletionRequest
from .styles.base import Conversation, NamedToolChoice, ResponseFormat, ToolSpec


#: deepest nesting of a tool's parameters or a response schema; the converter's own limit is lower,
#: this one protects every walker (prompt builders, validators) from recursing without bound
MAX_SCHEMA_DEPTH = 100


def check_depth(value: Any, param: str, limit: int = MAX_SCHEMA_DEPTH) -> None:
    """A 400 naming ``param`` when ``value`` nests deeper than ``limit``; iterative, so it cannot recurse."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise BadRequest(f"'{param}' is nested more than {limit} levels deep", param=param,
                             code="schema_too_deep")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def to_conversation(req: ChatCompletionRequest) -> Conversation:
    """Reduce an OpenAI request to what a style needs, checking cross-field rules."""
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
        messages.append(out)

    tools = [
        ToolSpec(name=t.function.name, description=t.function.description or "",
                 parameters=t.function.parameters if t.function.parameters is not None
                 else {"type": "object", "properties": {}})
        for t in req.tools or []
    ]
    for i, t in enumerate(tools):
        check_depth(t.parameters, f"tools[{i}].function.parameters")
    names = [t.name for t in tools]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise BadRequest(f"tool names must be unique; repeated: {', '.join(sorted(dupes))}", param="tools")

    choice: Any = req.tool_choice if req.tool_choice is not None else ("auto" if tools else "none")
    if not isinstance(choice, str):
        if choice.function.name not in names:
            raise BadRequest(f"tool_choice names function '{choice.function.name}', which is not in 'tools'",
                             param="tool_choice")
        choice = NamedToolChoice(choice.function.name)
    elif choice == "required" and not tools:
        raise BadRequest("tool_choice 'required' needs at least one tool in 'tools'", param="tool_choice")

    fmt = ResponseFormat()
    if req.response_format is not None and req.response_format.type != "text":
        js = req.response_format.json_schema
        fmt = ResponseFormat(
            type=req.response_format.type,
            schema=js.schema_ if js is not None and js.schema_ is not None else None,
            name=js.name if js else None,
            strict=bool(js.strict) if js else False,
        )
        check_depth(fmt.schema, "response_format.json_schema.schema")
        if fmt.type == "json_schema" and fmt.schema is None:
            fmt = ResponseFormat(type="json_object")
    return Conversation(messages=messages, tools=tools, tool_choice=choice,
                        parallel_tool_calls=req.parallel_tool_calls, response_format=fmt)
