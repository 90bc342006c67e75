"""GBNF building helpers the dialects share: tool arguments and the answer schema through the converter.

Every dialect's grammar is literal text around schema-constrained JSON, built
in its own module through the :class:`~oaiproxy.grammar.GrammarBuilder`: each
rule is added by name and referenced by the name ``add_rule`` returns (an
equal rule added earlier is reused, so a name is never assumed). The schema
helpers name the request field a refused schema came from
(``tools[3].function.parameters``, ``response_format.json_schema.schema``) so
the client gets a 400 that points at it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.base import StyleError
from oaiproxy.grammar import GrammarBuilder, SchemaError, gbnf_literal


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


#: up to two whitespace characters between a dialect's tokens: a newline and an indent, no room to ramble
SHORT_WS = "[ \\t\\n]{0,2}"


def alternatives(builder: GrammarBuilder, name: str, rules: Sequence[str]) -> str:
    """A rule matching any one of ``rules``; returns the name to reference (an equal rule is reused)."""
    return builder.add_rule(name, " | ".join(rules))


__all__ = ["SHORT_WS", "add_response_schema", "add_tool_args", "alternatives", "json_call_body", "lit", "repeat_rule"]
