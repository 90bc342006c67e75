"""An OpenAI chat request reduced to the one conversation model every later stage reads.

Cross-field request rules (tool names unique, ``tool_choice`` naming a given
tool, schemas not nested without bound) are checked here, once, so that the
styles, the grammar and the validator can take the :class:`Conversation` as
given.
"""

from __future__ import annotations

import json
from typing import Any

from oaiproxy.errors import BadRequest
from oaiproxy.grammar import SchemaError, enforced_schema
from oaiproxy.api.chat.protocol import ChatCompletionRequest
from oaiproxy.conversation.model import Conversation, NamedToolChoice, ResponseFormat, ToolSpec


#: deepest nesting of a tool's parameters or a response schema; the converter's own limit is lower,
#: this one protects every walker (prompt builders, validators) from recursing without bound
MAX_SCHEMA_DEPTH = 100

#: deepest nesting of a history tool call's ``arguments`` JSON text: every style and template parses
#: it (``json.loads`` recurses), and no real call nests this deep
MAX_ARGUMENTS_DEPTH = 100


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


def json_text_depth(text: str) -> int:
    """How deep ``[``/``{`` nest in JSON text (outside strings), without parsing it: iterative, linear."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def check_schema_for(schema: Any, param: str, what: str, *, objects: str = "open", strict: bool = False) -> None:
    """A 400 naming ``param`` (and ``what``: the tool) unless ``schema`` is a valid JSON Schema that the
    proxy can enforce as asked (``strict`` included), before any style or template walks it.

    The check is :func:`oaiproxy.grammar.enforced_schema` itself — the meta-schema (2020-12,
    draft 7, draft 4), then the rewriting the grammar and the validator share — so a schema
    that passes here is one both will read the same way.
    """
    try:
        enforced_schema(schema, objects=objects, strict=strict)  # type: ignore[arg-type]
    except SchemaError as e:
        raise BadRequest(f"{what}: {e}", param=param, code="invalid_schema") from None


def to_conversation(req: ChatCompletionRequest, *, tool_extra_keys: bool = False) -> Conversation:
    """Reduce an OpenAI request to what a style needs, checking cross-field rules.

    ``tool_extra_keys`` (the ``--tool-extra-keys`` setting) lets tool arguments carry keys a
    schema does not declare where it omits ``additionalProperties``; by default an object
    that declares ``properties`` admits only those (small models invent keys otherwise).
    """
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
            for j, tc in enumerate(msg.tool_calls):
                if json_text_depth(tc.function.arguments) > MAX_ARGUMENTS_DEPTH:
                    where = f"messages[{i}].tool_calls[{j}].function.arguments"
                    raise BadRequest(f"'{where}' is nested more than {MAX_ARGUMENTS_DEPTH} levels deep",
                                     param=where, code="arguments_too_deep")
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
                 else {"type": "object", "properties": {}},
                 strict=bool(t.function.strict), extra_keys=tool_extra_keys)
        for t in req.tools or []
    ]
    for i, t in enumerate(tools):
        where = f"tools[{i}].function.parameters"
        check_depth(t.parameters, where)
        check_schema_for(t.parameters, where, f"{where} (tool {t.name!r})", objects=t.objects, strict=t.strict)
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
        where = "response_format.json_schema.schema"
        check_depth(fmt.schema, where)
        if fmt.type == "json_schema" and fmt.schema is None:
            fmt = ResponseFormat(type="json_object")
        elif fmt.schema is not None:
            check_schema_for(fmt.schema, where, where, strict=fmt.strict)
            if fmt.strict:  # the styles build the grammar from the schema with every object closed
                closed = json.loads(json.dumps(enforced_schema(fmt.schema, strict=True)))  # a copy: shared
                fmt = ResponseFormat(type=fmt.type, schema=closed,
                                     name=fmt.name, strict=True)
    return Conversation(messages=messages, tools=tools, tool_choice=choice,
                        parallel_tool_calls=req.parallel_tool_calls, response_format=fmt)
