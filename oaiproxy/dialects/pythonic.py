"""LFM2.5: pythonic calls ``<|tool_call_start|>[get_weather(city='Paris'), …]<|tool_call_end|>``.

Liquid's LFM2.5 writes its calls as a Python list of function calls with
keyword arguments between two special tokens. The template renders a string
argument single-quoted, a mapping as JSON (``tojson``) and anything else with
Jinja's ``| string`` (``True``, ``None``, ``['a', 'b']``). The grammar writes
Python literals whose values satisfy each parameter's schema, and the parser
reads them back as JSON arguments:

* a string is ``'single-quoted'`` (escapes ``\\\\ \\' \\" \\n \\r \\t``; a length is counted
  in characters) or ``"double-quoted"``, the schema converter's JSON string (read as
  JSON, which Python reads alike but for ``\\/`` and surrogate pairs); a string with a
  ``pattern`` or ``format`` is only the latter, which holds it exactly;
* ``True``/``False``, ``None``; a number as JSON writes it;
* a list ``[…]`` of such values (``items``, ``minItems``, ``maxItems``);
* an object is JSON through the schema converter, as the template writes a mapping;
* ``enum``/``const``, ``anyOf`` and a list of types as the alternatives they allow.

Anything else the tool's enforced schema still holds (``contains``,
``prefixItems``, ``$ref``, a value of any type...) is refused with a StyleError
naming the parameter: it has no exact Python spelling here. Parameters come
in the order the schema declares them (required ones always, optional ones
or not), separated by ``, ``, and their names must be Python identifiers;
undeclared parameters are never generated.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from oaiproxy.conversation.model import ToolSpec
from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.base import OutputParser, StyleError
from oaiproxy.dialects.gbnf import alternatives, lit
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import Call, SampleOutput, Samples
from oaiproxy.dialects.streaming import CallHandle, JsonCallSection
from oaiproxy.dialects.xml_values import object_parameters
from oaiproxy.grammar import GrammarBuilder, SchemaError
from oaiproxy.grammar.builder import quant
from oaiproxy.grammar.enforced import validator
from oaiproxy.grammar.limits import DIRECT_REPEAT

OPEN = "<|tool_call_start|>"
CLOSE = "<|tool_call_end|>"

#: keywords that say nothing about a value
ANNOTATIONS = frozenset({"description", "title", "examples", "default", "$comment", "deprecated", "readOnly",
                         "writeOnly"})
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_KEY = re.compile(r"[ \t\n]{0,2}([A-Za-z_][A-Za-z0-9_]{0,63})=")
#: what may still grow into a keyword
_KEY_PREFIX = re.compile(r"[ \t\n]{0,2}(?:[A-Za-z_][A-Za-z0-9_]{0,63})?")
#: Python's spelling of the JSON literals, and the JSON spelling itself (inside a mapping)
_WORDS = {"True": "true", "False": "false", "None": "null", "true": "true", "false": "false", "null": "null"}
_SQ_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


# -- Python literals, written and read ---------------------------------------------------------


def python_literal(value: Any) -> str:
    """A JSON value as this format writes it: strings single-quoted, a mapping as JSON, the rest Python."""
    if isinstance(value, str):
        if any(ord(c) < 0x20 and c not in "\n\r\t" for c in value):
            return json.dumps(value, ensure_ascii=False)
        return "'" + "".join(_SQ_ESCAPES.get(c, c) for c in value) + "'"
    if value is True or value is False or value is None:
        return {True: "True", False: "False", None: "None"}[value]
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def call_text(name: str, arguments: str) -> str:
    """``NAME(key=value, …)`` for a call whose arguments are JSON text."""
    try:
        args = json.loads(arguments)
    except ValueError:
        args = {}
    pairs = args.items() if isinstance(args, dict) else ()
    return f"{name}(" + ", ".join(f"{k}={python_literal(v)}" for k, v in pairs) + ")"


def _calls_text(calls: Sequence[Call]) -> str:
    return OPEN + "[" + ", ".join(call_text(n, a) for n, a in calls) + "]" + CLOSE


class LiteralError(ValueError):
    """The text is not a literal the grammar writes."""


class _Literal:
    """Reads one literal of this format (see the module docstring) into JSON text, preserving numbers."""

    def __init__(self, text: str) -> None:
        self._s = text
        self._i = 0

    def json(self) -> str:
        out = self._value()
        self._ws()
        if self._i != len(self._s):
            raise LiteralError(f"text after the value: {self._s[self._i:]!r}")
        return out

    def _ws(self) -> None:
        while self._i < len(self._s) and self._s[self._i] in " \t\n\r":
            self._i += 1

    def _value(self) -> str:
        self._ws()
        s, i = self._s, self._i
        if i >= len(s):
            raise LiteralError("a value is missing")
        ch = s[i]
        if ch in "'\"":
            return json.dumps(self._string(), ensure_ascii=False)
        if ch in "[{":
            return self._container(ch)
        number = _JSON_NUMBER.match(s, i)
        if number:
            self._i = number.end()
            return number.group()
        for word, spelled in _WORDS.items():
            if s.startswith(word, i):
                self._i = i + len(word)
                return spelled
        raise LiteralError(f"unexpected {ch!r}")

    def _string(self) -> str:
        s, start = self._s, self._i
        quote = s[start]
        i = start + 1
        while i < len(s) and s[i] != quote:
            i += 2 if s[i] == "\\" else 1
        if i >= len(s):
            raise LiteralError("unterminated string")
        self._i = i + 1
        token = s[start:i + 1]
        try:
            # double quotes are the converter's JSON strings; single quotes Python's (the grammar's escapes)
            value = json.loads(token) if quote == '"' else ast.literal_eval(token)
        except (ValueError, SyntaxError) as e:
            raise LiteralError(f"bad string {token!r}") from e
        if not isinstance(value, str):  # pragma: no cover - a quoted token is a string
            raise LiteralError(f"bad string {token!r}")
        return value

    def _container(self, opener: str) -> str:
        closer = "]" if opener == "[" else "}"
        self._i += 1
        items: list[str] = []
        while True:
            self._ws()
            if self._i < len(self._s) and self._s[self._i] == closer:
                self._i += 1
                break
            if items:
                if self._s[self._i:self._i + 1] != ",":
                    raise LiteralError(f"expected ',' or {closer!r}")
                self._i += 1
                self._ws()
            if opener == "[":
                items.append(self._value())
                continue
            if self._s[self._i:self._i + 1] not in ("'", '"'):
                raise LiteralError("a mapping key must be a string")
            key = json.dumps(self._string(), ensure_ascii=False)
            self._ws()
            if self._s[self._i:self._i + 1] != ":":
                raise LiteralError("expected ':'")
            self._i += 1
            items.append(f"{key}: {self._value()}")
        return opener + ", ".join(items) + closer


def literal_json(text: str) -> str:
    """The JSON text of one literal; raises :class:`LiteralError` for text the grammar does not write."""
    return _Literal(text).json()


class _Extent:
    """Where a literal ends: the first ``,`` or ``)`` outside strings and brackets, fed piece by piece."""

    def __init__(self) -> None:
        self._stack: list[str] = []
        self._quote = ""
        self._escape = False

    def end_in(self, text: str) -> int | None:
        """The index in ``text`` of the character that ends the literal (not part of it), or None."""
        for i, ch in enumerate(text):
            if self._quote:
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == self._quote:
                    self._quote = ""
                elif ch == "\n":
                    raise LiteralError("a newline inside a string")
            elif ch in "'\"":
                self._quote = ch
            elif ch in "[{(":
                self._stack.append({"[": "]", "{": "}", "(": ")"}[ch])
            elif ch in "]})":
                if not self._stack:
                    if ch == ")":
                        return i
                    raise LiteralError(f"unbalanced {ch!r}")
                if self._stack.pop() != ch:
                    raise LiteralError(f"unbalanced {ch!r}")
            elif ch == "," and not self._stack:
                return i
        return None


# -- the parser ----------------------------------------------------------------------------------


class PythonicParser(JsonCallSection):
    """Content, then ``<|tool_call_start|>[NAME(key=value, …), …]<|tool_call_end|>``.

    A call is announced at its ``(``; each argument is sent once its value is
    complete, as JSON. Text that breaks the syntax inside a call ends the
    section: the call is cut (``truncated``), the rest is content.
    """

    triggers = (OPEN,)

    def __init__(self, enabled: bool = True) -> None:
        super().__init__(enabled)
        self._read = ""
        self._call: CallHandle | None = None
        self._keys = 0
        self._key = ""
        self._value: list[str] = []
        self._extent = _Extent()

    def _enter(self, trigger: str) -> None:
        self._read = trigger
        self._call = None
        self._mode = "open"

    def _section(self) -> None:
        getattr(self, "_mode_" + self._mode)()

    def _broken(self) -> None:
        """The text left the grammar's syntax: no call yet means it was content; else the call is cut."""
        if self._call is None:
            self.emit_content(self._read)
        else:
            self.truncated = True
        self._mode = "content"

    def _mode_open(self) -> None:
        if self._buf[:1] == "[":
            self._read += "["
            self._buf = self._buf[1:]
            self._mode = "name"
        elif self._buf:
            self._broken()

    def _mode_name(self) -> None:
        stripped = self._buf.lstrip(" \t\n")
        end = stripped.find("(")
        name = stripped if end < 0 else stripped[:end]
        if len(name) > 128 or any(c.isspace() or c in "()[]{},='\"" for c in name) or end == 0:
            self._broken()
            return
        if end < 0:
            return
        self._buf = stripped[end + 1:]
        self._call = self.start_call(name)
        self.add_arguments(self._call, "{")
        self._keys = 0
        self._mode = "key"

    def _mode_key(self) -> None:
        """A keyword (``key=``), or the ``)`` of a call without arguments."""
        assert self._call is not None
        if not self._keys and self._buf.lstrip(" \t\n")[:1] == ")":
            self._close_call()
            return
        found = _KEY.match(self._buf)
        if found is None:
            if not _KEY_PREFIX.fullmatch(self._buf):
                self._broken()
            return
        self._key = found.group(1)
        self._buf = self._buf[found.end():]
        self._value = []
        self._extent = _Extent()
        self._mode = "value"

    def _close_call(self) -> None:
        assert self._call is not None
        self.add_arguments(self._call, "}")
        self._buf = self._buf.lstrip(" \t\n")[1:]
        self._mode = "next"

    def _mode_value(self) -> None:
        assert self._call is not None
        try:
            end = self._extent.end_in(self._buf)
        except LiteralError:
            self._broken()
            return
        if end is None:
            self._value.append(self._buf)
            self._buf = ""
            return
        self._value.append(self._buf[:end])
        self._buf = self._buf[end:]
        try:
            value = literal_json("".join(self._value))
        except LiteralError:
            self._broken()
            return
        self.add_arguments(self._call, (", " if self._keys else "") + f"{json.dumps(self._key)}: {value}")
        self._keys += 1
        if self._buf[0] == ",":
            self._buf = self._buf[1:]
            self._mode = "key"
        else:
            self._close_call()

    def _mode_next(self) -> None:
        stripped = self._buf.lstrip(" \t\n")
        if stripped[:1] == ",":
            self._buf = stripped[1:]
            self._mode = "name"
        elif stripped[:1] == "]":
            self._buf = stripped[1:]
            self._mode = "close"
        elif stripped:
            self._broken()

    def _mode_close(self) -> None:
        if self._expect(CLOSE) is not False:  # a missing closing token does not undo whole calls
            self._mode = "after"

    def _end_section(self) -> None:
        if self._mode in ("open", "name") and self._call is None:
            self.truncated = self._mode == "name" and bool(self._buf.strip())
            self.emit_content(self._read + self._buf)
        elif self._mode in ("name", "key", "value", "next"):
            self.truncated = True
        elif self._mode == "close" and self._expect(CLOSE) is None:
            self.emit_content(self._buf)
        self._buf = ""


# -- the grammar ---------------------------------------------------------------------------------


class _ValueGrammar:
    """Python-literal rules for one tool's parameters (see the module docstring)."""

    def __init__(self, builder: GrammarBuilder, spec: ToolSpec, index: int, prefix: str) -> None:
        self.b = builder
        self.spec = spec
        self.where = f"tools[{index}].function.parameters"
        self.prefix = prefix

    def refuse(self, key: str, what: str) -> NoReturn:
        raise StyleError(f"{self.where}: parameter {key!r} is {what}, which the pythonic call format cannot write "
                         "as a Python literal exactly", param=self.where)

    def json(self, schema: Any, name: str) -> str:
        try:
            return self.b.add_schema(schema, name, objects=self.spec.objects, strict=self.spec.strict)
        except SchemaError as e:
            raise StyleError(f"{self.where}: {e}", param=self.where) from e

    def value(self, schema: Any, name: str, key: str) -> str:
        if not isinstance(schema, Mapping) or not set(schema) - ANNOTATIONS:
            self.refuse(key, "a value of any type")
        keys = set(schema) - ANNOTATIONS
        if "enum" in keys or "const" in keys:
            return self.choices(schema, name, key)
        if "anyOf" in keys:
            if keys != {"anyOf"}:
                self.refuse(key, f"anyOf beside {', '.join(sorted(keys - {'anyOf'}))}")
            return alternatives(self.b, name, [self.value(branch, f"{name}-any{k}", key)
                                               for k, branch in enumerate(schema["anyOf"])])
        kind = schema.get("type")
        if isinstance(kind, list):
            return alternatives(self.b, name, [self.value({**schema, "type": t}, f"{name}-{t}", key)
                                               for t in dict.fromkeys(kind)])
        if kind is None and ("properties" in keys or "additionalProperties" in keys):
            kind = "object"
        odd = sorted(keys & {"oneOf", "allOf", "not", "$ref", "if", "$defs", "definitions"})
        if odd:
            self.refuse(key, f"a value with {', '.join(odd)}")
        if kind == "boolean":
            return self.b.add_rule(f"{self.prefix}-bool", '"True" | "False"')
        if kind == "null":
            return self.b.add_rule(f"{self.prefix}-none", '"None"')
        if kind in ("integer", "number", "object"):
            return self.json(schema, name)
        if kind == "string":
            return self.string(schema, name)
        if kind == "array":
            return self.array(schema, name, key)
        self.refuse(key, "a value without a type")

    def choices(self, schema: Mapping[str, Any], name: str, key: str) -> str:
        values = list(schema["enum"]) if "enum" in schema else [schema["const"]]
        check = validator(dict(schema))
        spelled: list[str] = []
        for v in values:
            if check.is_valid(v):
                spelled.append(lit(python_literal(v)))
                if isinstance(v, str):
                    spelled.append(lit(json.dumps(v, ensure_ascii=False)))
        if not spelled:
            self.refuse(key, "an enum or const none of whose values its schema allows")
        return self.b.add_rule(name, " | ".join(dict.fromkeys(spelled)))

    def string(self, schema: Mapping[str, Any], name: str) -> str:
        double = self.json(schema, f"{name}-json")
        if set(schema) - ANNOTATIONS - {"type", "minLength", "maxLength"}:
            return double  # a pattern or format: only the converter's JSON string is exact
        lo, hi = int(schema.get("minLength", 0)), schema.get("maxLength")
        if lo > DIRECT_REPEAT or (hi is not None and (hi > DIRECT_REPEAT or hi < lo)):
            return double
        char = self.b.add_rule(f"{self.prefix}-sq-char", "[^'\\\\\\x00-\\x1f] | \"\\\\\" ['\"\\\\nrt]")
        single = self.b.add_rule(f"{name}-sq", f"\"'\" {quant(char, lo, hi)} \"'\"")
        return self.b.add_rule(name, f"{single} | {double}")

    def array(self, schema: Mapping[str, Any], name: str, key: str) -> str:
        odd = sorted(set(schema) - ANNOTATIONS - {"type", "items", "minItems", "maxItems"})
        if odd:
            self.refuse(key, f"an array with {', '.join(odd)}")
        lo, hi = int(schema.get("minItems", 0)), schema.get("maxItems")
        if lo > DIRECT_REPEAT or (hi is not None and (hi > DIRECT_REPEAT or hi < lo)):
            self.refuse(key, "an array with these item bounds")
        if hi == 0:
            return self.b.add_rule(name, '"[]"')
        item = self.value(schema.get("items", {}), f"{name}-item", key)
        more = self.b.add_rule(f"{name}-more", f'"," " "? {item}')
        tail = quant(more, max(lo - 1, 0), None if hi is None else hi - 1)
        items = f"{item} {tail}".strip()
        return self.b.add_rule(name, f'"[" {items} "]"' if lo else f'"[" ( {items} )? "]"')


def _arguments_rule(builder: GrammarBuilder, spec: ToolSpec, index: int, prefix: str) -> str:
    """``key=value, …`` in declared order: required parameters always, optional ones or not."""
    props, required = object_parameters(spec, index, "pythonic")
    values = _ValueGrammar(builder, spec, index, prefix)
    params: list[tuple[str, bool]] = []
    for j, (key, prop) in enumerate(props.items()):
        if not key.isidentifier():
            raise StyleError(f"{values.where}: parameter {key!r} is not a Python identifier, which the pythonic "
                             "call format needs for a keyword argument", param=values.where)
        value = values.value(prop, f"{prefix}-tool{index}-p{j}", key)
        params.append((builder.add_rule(f"{prefix}-tool{index}-kw{j}", f"{lit(key + '=')} {value}"),
                       key in required))
    sep = '"," " "?'

    def after(j: int) -> str:
        return " ".join(f"{sep} {p}" if req else f"( {sep} {p} )?" for p, req in params[j:])

    def start(j: int) -> str:
        if j == len(params):
            return ""
        rule, req = params[j]
        first = f"{rule} {after(j + 1)}".strip()
        if req:
            return first
        rest = start(j + 1)
        return builder.add_rule(f"{prefix}-tool{index}-from{j}", f"{first} | {rest}" if rest else f"{first} | \"\"")

    return start(0)


@register(detect_priority=90)
class LFM2Style(DialectStyle):
    name = "lfm2"
    rule_prefix = "lfm2"
    fallback_prompt = "tools-lfm2.jinja"
    special_tokens = (OPEN, CLOSE)
    samples = Samples(
        templates=("LFM2.5-8B-A1B.jinja",),
        calls=_calls_text,
        history_call=lambda n, a: OPEN + "[" + call_text(n, a),
        fallback_call=lambda n, a: OPEN + "[" + call_text(n, a),
        argument_key=lambda key: f"{key}=",
        outputs=(
            SampleOutput("Checking.<|tool_call_start|>[get_weather(city='Paris', unit=\"celsius\")]<|tool_call_end|>",
                         "Checking.", (("get_weather", {"city": "Paris", "unit": "celsius"}),)),
            SampleOutput("<|tool_call_start|>[f(a=[1, -2.5e3, 'x, y)'], b={\"k\": [true, null]}, c=None), "
                         "g()]<|tool_call_end|>", "",
                         (("f", {"a": [1, -2.5e3, "x, y)"], "b": {"k": [True, None]}, "c": None}), ("g", {}))),
            SampleOutput("<|tool_call_start|> is a token, not a call", "<|tool_call_start|> is a token, not a call"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return OPEN in template_source and CLOSE in template_source

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """``<|tool_call_start|>[`` up to ``max_calls`` ``NAME(key=value, …)`` calls ``]<|tool_call_end|>``."""
        p = self.rule_prefix
        call = alternatives(builder, f"{p}-call", [
            builder.add_rule(f"{p}-tool{i}-call",
                             f"{lit(spec.name + '(')} {_arguments_rule(builder, spec, i, p)} \")\"")
            for i, spec in tools.indexed])
        more = tools.max_calls - 1
        rest = f' ( "," " "? {call} ){{0,{more}}}' if more else ""
        return builder.add_rule(f"{p}-calls", f'{lit(OPEN + "[")} {call}{rest} {lit("]" + CLOSE)}')

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": OPEN}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return PythonicParser(enabled=tools.mode != "none")

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return f"{OPEN}[{call_text(name, arguments)}]{CLOSE}"


__all__ = ["LFM2Style", "LiteralError", "PythonicParser", "call_text", "literal_json", "python_literal"]
