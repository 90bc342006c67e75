"""GBNF building helpers the dialects share: tool arguments and the answer schema through the converter.

Every dialect's grammar is literal text around schema-constrained JSON; these
name the request field a refused schema came from (``tools[3].function.
parameters``, ``response_format.json_schema.schema``) so the client gets a 400
that points at it.
"""

from __future__ import annotations

import json
from typing import Any

from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.base import StyleError
from oaiproxy.grammar import GrammarBuilder, SchemaError, gbnf_literal
from oaiproxy.resources import read_text


def add_tool_args(builder: GrammarBuilder, plan: ToolPlan, prefix: str) -> dict[str, str]:
    """Add each tool's parameters schema to ``builder``; name -> rule for its arguments.

    The grammar is that of the schema as enforced for this tool (its ``strict`` and
    extra-keys setting), the same document :func:`oaiproxy.validation.validate_tool_calls`
    checks the answer against.
    """
    rules: dict[str, str] = {}
    for i, spec in plan.indexed:
        try:
            rules[spec.name] = builder.add_schema(spec.parameters, f"{prefix}-tool{i}-args",
                                                  objects=spec.objects, strict=spec.strict)
        except SchemaError as e:
            where = f"tools[{i}].function.parameters"
            raise StyleError(f"{where}: {e}", param=where) from e
    return rules


def add_response_schema(builder: GrammarBuilder, schema: dict[str, Any], name: str) -> str:
    """Add the response_format schema, naming the request field when the converter refuses it."""
    try:
        return builder.add_schema(schema, name)
    except SchemaError as e:
        where = "response_format.json_schema.schema"
        raise StyleError(f"{where}: {e}", param=where) from e


def repeat_rule(item: str, separator: str, max_items: int) -> str:
    """GBNF for 1..max_items of ``item`` separated by ``separator``."""
    if max_items <= 1:
        return item
    return f"{item} ( {separator} {item} ){{0,{max_items - 1}}}"


def lit(text: str) -> str:
    """A GBNF literal for exact text (through the converter's escaping)."""
    return gbnf_literal(text)


def json_call_body(name: str, args_rule: str, ws: str, args_key: str = "arguments", tail: str = "") -> str:
    """GBNF for ``{"name": "<name>", "<args_key>": <args>[tail]}`` with ``ws`` between tokens."""
    return (
        f'"{{" {ws} {lit(json.dumps("name"))} {ws} ":" {ws} {lit(json.dumps(name))} {ws} "," {ws} '
        f'{lit(json.dumps(args_key))} {ws} ":" {ws} {args_rule} {tail} {ws} "}}"'
    )


def define(builder: GrammarBuilder, name: str, body: str) -> str:
    """Add a rule under exactly ``name``, for rules other rules (and fragments) refer to by name.

    The builder reuses an existing rule when bodies are equal; a referenced name
    must exist as written, so an equal body is wrapped to make it distinct.
    """
    got = builder.add_rule(name, body)
    if got != name:
        got = builder.add_rule(name, f"( {body} )")
    if got != name:
        raise RuntimeError(f"grammar rule {name!r} could not be defined (the builder named it {got!r})")
    return name


def load_fragment(builder: GrammarBuilder, name: str) -> None:
    """Add the rules of ``grammars/<name>`` (``rule ::= body`` lines, ``#`` comments) to ``builder``."""
    text = read_text("grammars", name)
    current: list[str] | None = None
    rules: list[list[str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "::=" in line and not line[0].isspace():
            head, body = line.split("::=", 1)
            current = [head.strip(), body.strip()]
            rules.append(current)
        elif current is not None:
            current[1] += " " + stripped
    for rule_name, body in rules:
        define(builder, rule_name, body)


__all__ = ["add_response_schema", "add_tool_args", "define", "json_call_body", "lit", "load_fragment", "repeat_rule"]
