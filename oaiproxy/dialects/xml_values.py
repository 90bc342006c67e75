"""Arguments written as named XML-like elements: the value grammar and readers the XML dialects share.

Several formats write a call's arguments one element per key instead of one
JSON object: Qwen3-Coder's ``<parameter=KEY>VALUE</parameter>``, GLM's
``<arg_key>KEY</arg_key><arg_value>VALUE</arg_value>``, MiniMax's and
DeepSeek's ``<parameter name="KEY">VALUE</parameter>``. Their templates agree on
the values: a string is written raw, anything else as JSON (``tojson``, or
``| string`` for numbers). So do the grammar and the parser here:

* a plain ``{"type": "string"}`` value is raw text that cannot contain the
  text that ends the value (:func:`text_until`: an automaton, not a regex);
* a string with ``minLength``/``maxLength`` is raw text without ``<`` (every
  end text here holds a ``<``), so its length can be counted;
* a string ``enum``/``const`` is its literal values;
* a string with a ``pattern`` or ``format`` is refused: raw text cannot be held
  to it exactly;
* every other schema is a JSON value through the schema converter.

The tool's parameters must be an object schema with plain ``properties``
(:func:`object_parameters`), since each key becomes an element.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from typing import Any

from oaiproxy.conversation.model import ToolSpec
from oaiproxy.dialects.base import StyleError
from oaiproxy.dialects.gbnf import lit
from oaiproxy.grammar import GrammarBuilder, SchemaError
from oaiproxy.grammar.enforced import enforced_schema
from oaiproxy.grammar.limits import DIRECT_REPEAT

#: the keywords a raw-text string parameter may carry (annotations, and the constraints handled exactly)
RAW_STRING_KEYS = frozenset({"type", "description", "title", "examples", "default", "$comment", "deprecated",
                             "readOnly", "writeOnly", "minLength", "maxLength", "enum", "const"})
#: the keywords an arguments schema may carry when each key becomes an element
OBJECT_KEYS = frozenset({"type", "properties", "required", "additionalProperties", "description", "title",
                         "$schema", "$comment", "examples", "default"})


def render_value(value: Any) -> str:
    """An argument value as the templates write it: a string raw, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def is_raw_string(schema: Any) -> bool:
    """Whether a parameter's value is written raw (a string schema), not as JSON."""
    return isinstance(schema, Mapping) and schema.get("type") == "string"


def declared_properties(spec: ToolSpec) -> dict[str, Any]:
    """The tool's properties as the grammar and the validator enforce them (empty when it declares none)."""
    try:
        top = enforced_schema(spec.parameters, objects=spec.objects, strict=spec.strict)
    except SchemaError:
        return {}
    props = top.get("properties") if isinstance(top, Mapping) else None
    return dict(props) if isinstance(props, Mapping) else {}


def raw_string_keys(spec: ToolSpec) -> frozenset[str]:
    """The parameters of ``spec`` the parser reads as raw text."""
    return frozenset(k for k, p in declared_properties(spec).items() if is_raw_string(p))


def json_value_text(text: str, raw: bool, *, python_literals: bool = False) -> str:
    """A parameter's value as JSON text: a raw string encoded, a JSON value as written (a string if it isn't JSON).

    ``python_literals``: a value that is not JSON may be a Python literal, as templates that write values
    with ``| string`` spell them (``True``, ``{'a': 1}``; MiniCPM5, Seed-OSS): it is read as such.
    """
    if not raw:
        stripped = text.strip()
        try:
            json.loads(stripped)
        except ValueError:
            pass
        else:
            return stripped
        if python_literals:
            try:
                value = ast.literal_eval(stripped)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return json.dumps(text, ensure_ascii=False)
            if isinstance(value, (dict, list, bool, int, float)) or value is None:
                try:
                    return json.dumps(value, ensure_ascii=False, allow_nan=False)
                except (TypeError, ValueError):
                    pass
    return json.dumps(text, ensure_ascii=False)


def json_string_piece(text: str) -> str:
    """``text`` as the inside of a JSON string: escaping is per character, so pieces streamed one by one
    concatenate into the encoding of the whole raw value."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def object_parameters(spec: ToolSpec, index: int, dialect: str) -> tuple[dict[str, Any], set[str]]:
    """The tool's (properties, required keys), or a StyleError naming ``tools[index]`` when it has no such shape."""
    where = f"tools[{index}].function.parameters"
    try:
        top = enforced_schema(spec.parameters, objects=spec.objects, strict=spec.strict)
    except SchemaError as e:
        raise StyleError(f"{where}: {e}", param=where) from e
    if top is True or top == {}:
        top = {"type": "object"}
    if not isinstance(top, Mapping) or top.get("type", "object") != "object" or set(top) - OBJECT_KEYS:
        extra = sorted(set(top) - OBJECT_KEYS) if isinstance(top, Mapping) else []
        raise StyleError(f"{where}: the {dialect} format writes arguments as named parameters; it needs an "
                         f"object schema with plain 'properties'" + (f" (not {', '.join(extra)})" if extra else ""),
                         param=where)
    props = dict(top.get("properties") or {})
    required = set(top.get("required") or [])
    if not required <= set(props):
        raise StyleError(f"{where}: required parameters without a schema in 'properties': "
                         f"{', '.join(sorted(required - set(props)))}", param=where)
    return props, required


def value_rule(builder: GrammarBuilder, prop: Any, name: str, spec: ToolSpec, index: int, key: str, *,
               end: str, dialect: str, text_prefix: str) -> str:
    """The rule for one parameter's value, which the text ``end`` follows (see the module docstring).

    ``text_prefix`` names the shared free-text rules (one set per ``end``).
    """
    where = f"tools[{index}].function.parameters"
    if not is_raw_string(prop):
        try:
            return builder.add_schema(prop, name, objects=spec.objects, strict=spec.strict)
        except SchemaError as e:
            raise StyleError(f"{where}: {e}", param=where) from e
    odd = sorted(set(prop) - RAW_STRING_KEYS)
    if odd:
        raise StyleError(f"{where}: parameter {key!r} is a string with {', '.join(odd)}, which the {dialect} "
                         "format writes as raw text and cannot be held to exactly", param=where)
    lo = prop.get("minLength", 0)
    hi = prop.get("maxLength")
    if "enum" in prop or "const" in prop:
        values = list(prop["enum"]) if "enum" in prop else [prop["const"]]
        if "const" in prop and "enum" in prop:
            values = [v for v in values if v == prop["const"]]
        ok = [v for v in values if isinstance(v, str) and len(v) >= lo and (hi is None or len(v) <= hi)
              and end not in v]
        if not ok:
            raise StyleError(f"{where}: parameter {key!r} has no string value its enum and length allow",
                             param=where)
        return builder.add_rule(name, " | ".join(lit(v) for v in dict.fromkeys(ok)))
    if lo == 0 and hi is None:
        return text_until(builder, end, text_prefix)
    if (hi is not None and hi > DIRECT_REPEAT) or lo > DIRECT_REPEAT:
        raise StyleError(f"{where}: parameter {key!r}: string length bounds above {DIRECT_REPEAT} are not "
                         f"supported in the {dialect} format", param=where)
    if hi is not None and hi < lo:
        raise StyleError(f"{where}: parameter {key!r} has maxLength below minLength", param=where)
    # counted text: no '<' at all, so the end text (which holds one) cannot occur inside it
    assert "<" in end, "counted raw text relies on the end text holding a '<'"
    bound = f"{{{lo},}}" if hi is None else f"{{{lo},{hi}}}" if lo != hi else f"{{{lo}}}"
    return builder.add_rule(name, f"[^<]{bound}")


def text_until(builder: GrammarBuilder, end: str, prefix: str) -> str:
    """Any text not containing ``end``: the automaton that tracks how much of ``end`` was just read.

    State ``sJ`` means the longest tail of the text read so far that begins ``end`` is its first J
    characters (Knuth-Morris-Pratt); reading the last character of ``end`` in the last state is the
    only move missing, so ``end`` never occurs inside the text. Each character has one move, so the
    grammar is unambiguous even for an end whose first character recurs (``]]>``, ``]<]minimax[>[``).
    """
    n = len(end)
    assert n >= 2, f"{end!r} is too short to end a text"
    names = [f"{prefix}-text-s{j}" for j in range(n)]
    for j in range(n):
        moves: dict[int, list[str]] = {}
        for ch in dict.fromkeys(end[0] + end[j] + end):  # end[0] first, then end[j]: the classes read in order
            moves.setdefault(_next_state(end, j, ch), []).append(ch)
        moves.pop(0, None)
        excluded = "".join(_class_char(c) for k, cs in moves.items() for c in cs)
        first = 1 if j else n  # the move back to s1 leads, as in s0 the class does (the grammar reads in order)
        alts = ['""']
        alts += [f"{_one_of(cs)} {names[k]}" for k, cs in moves.items() if k == first]
        alts.append(f"[^{excluded}] {names[0]}")
        alts += [f"{_one_of(cs)} {names[k]}" for k, cs in sorted(moves.items()) if k != first and k < n]
        builder.add_named_rule(names[j], " | ".join(alts))
    return names[0]


def _next_state(end: str, j: int, ch: str) -> int:
    """How much of ``end`` the text ends with after reading ``ch`` in state ``j`` (``len(end)``: all of it)."""
    text = end[:j] + ch
    while not end.startswith(text):
        text = text[1:]
    return len(text)


def _one_of(chars: list[str]) -> str:
    return lit(chars[0]) if len(chars) == 1 else "[" + "".join(_class_char(c) for c in chars) + "]"


def _class_char(ch: str) -> str:
    """``ch`` inside a GBNF character class."""
    if ch == "\n":
        return "\\n"
    return "\\" + ch if ch in "]\\^-" else ch


__all__ = ["OBJECT_KEYS", "RAW_STRING_KEYS", "declared_properties", "is_raw_string", "json_string_piece",
           "json_value_text", "object_parameters", "raw_string_keys", "render_value", "text_until", "value_rule"]
