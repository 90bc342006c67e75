"""The promise, checked: every tool call names a requested tool and its arguments validate.

Grammars make invalid calls impossible in principle; this is the check that
they did, run on every parsed answer before it reaches the client. It checks
the schema the grammar was built from — :func:`oaiproxy.grammar.enforced_schema`
of the tool's parameters, with the same format checker and the same reading of
``pattern`` — so the two cannot disagree about an ordinary value. A problem
here is a bug (or a truncated answer), so each message names the call and what
is wrong with it, for the loud log line and the error the client gets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import jsonschema

from oaiproxy.conversation.model import ToolCall, ToolSpec
from oaiproxy.grammar import SchemaError
from oaiproxy.grammar.enforced import enforced_schema, validator


def validate_tool_calls(calls: Sequence[ToolCall], tools: Sequence[ToolSpec]) -> list[str]:
    """Problems with ``calls`` given the request's ``tools``; empty when all is well."""
    by_name = {spec.name: spec for spec in tools}
    problems: list[str] = []
    seen_ids: set[str] = set()
    for i, call in enumerate(calls):
        where = f"tool_calls[{i}]"
        if not call.id:
            problems.append(f"{where}.id is empty")
        elif call.id in seen_ids:
            problems.append(f"{where}.id {call.id!r} repeats an earlier call's id")
        seen_ids.add(call.id)
        spec = by_name.get(call.name)
        if spec is None:
            valid = ", ".join(repr(n) for n in by_name) or "no tools were given"
            problems.append(f"{where}.function.name {call.name!r} is not one of the request's tools ({valid})")
        try:
            arguments = json.loads(call.arguments)
        except (TypeError, ValueError, RecursionError) as e:
            problems.append(f"{where}.function.arguments is not valid JSON (truncated?): {e}: {call.arguments[:200]!r}")
            continue
        if spec is None:
            continue
        problems.extend(f"{where}.function.arguments{_at(err)}: {err.message}"
                        for err in _schema_errors(spec, arguments))
    return problems


def _schema_errors(spec: ToolSpec, instance: Any) -> list[jsonschema.ValidationError]:
    """Errors against the tool's schema *as enforced*, the very document its grammar was built from."""
    try:
        schema = enforced_schema(spec.parameters, objects=spec.objects, strict=spec.strict)
        errors = validator(schema).iter_errors(instance)
        return sorted(errors, key=lambda e: list(e.absolute_path))[:5]
    except (SchemaError, jsonschema.SchemaError) as e:
        return [jsonschema.ValidationError(f"the tool's parameters schema is invalid: {e}")]
    except RecursionError:
        return [jsonschema.ValidationError("the arguments are nested too deeply to check")]


def _at(err: jsonschema.ValidationError) -> str:
    return "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)


__all__ = ["validate_tool_calls"]
