"""Gemma 4: ``<|tool_call>call:NAME{key:<|"|>value<|"|>,…}<tool_call|>``, arguments in Gemma's own value syntax.

Gemma 4's templates write a call's arguments as an object with bare keys in
sorted order (Jinja's ``dictsort``), strings wrapped in the ``<|"|>`` token and
written raw (no escapes), ``true``/``false``, numbers as Python prints them,
nested objects and arrays alike::

    <|tool_call>call:get_weather{city:<|"|>Paris<|"|>,days:[1,2]}<tool_call|>

Several calls follow each other; after them the model writes ``<|tool_response>``
and waits for the results (a stop word here). The grammar writes that syntax
with values that satisfy each tool's schema (as enforced, the same document the
validator checks), and the parser turns it back into JSON arguments:

* an object writes its declared properties in sorted order, the required ones
  always, the optional ones or not; undeclared keys are never generated. A key
  that the bare syntax cannot hold (``:``, ``,``, braces, brackets, ``<``, ``>``,
  quotes or whitespace in it) is refused;
* a plain string is any text without ``<|"|>`` (which would end it); one with
  ``minLength``/``maxLength`` is counted text without ``<``; ``enum``/``const``
  are their literal values; a ``pattern`` or ``format`` is refused (raw text
  cannot be held to it);
* numbers, integers, booleans and null are the JSON converter's own rules (their
  text is the same in both syntaxes; null is written ``null``);
* arrays take ``items``, ``minItems`` and ``maxItems``; ``anyOf`` and type lists
  become alternatives; a schema that allows anything is any Gemma value.

Anything else (``$ref``, ``prefixItems``, …) is a StyleError naming the tool's
``parameters``. The lazy grammar's trigger is ``<|tool_call>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from oaiproxy.conversation.model import ToolSpec
from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.base import OutputParser, StyleError
from oaiproxy.dialects.gbnf import alternatives, lit, repeat_rule
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import Call, SampleOutput, Samples
from oaiproxy.dialects.streaming import JsonCallSection, partial_word_at_end
from oaiproxy.dialects.xml_values import text_until
from oaiproxy.grammar import GrammarBuilder, SchemaError
from oaiproxy.grammar.enforced import enforced_schema
from oaiproxy.grammar.keywords import ANNOTATIONS
from oaiproxy.grammar.limits import DIRECT_REPEAT

OPEN = "<|tool_call>"
CLOSE = "<tool_call|>"
#: what follows ``<|tool_call>``: ``call:`` and the function's name, then its arguments object
CALL_PREFIX = "call:"
#: the string delimiter token
QUOTE = '<|"|>'
#: what the model writes after its calls, waiting for their results
RESPONSE = "<|tool_response>"
END_OF_TURN = "<turn|>"

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}\Z")
#: a key the bare syntax can write and read back
_KEY = re.compile(r"[^\s:,{}\[\]<>\"']{1,128}\Z")
_SCALAR_END = ",}]"
_STRING_KEYS = frozenset({"type", "minLength", "maxLength"})
_OBJECT_KEYS = frozenset({"type", "properties", "required", "additionalProperties"})
_ARRAY_KEYS = frozenset({"type", "items", "minItems", "maxItems"})
_NUMBER_KEYS = frozenset({"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})


# -- the value syntax ------------------------------------------------------------------------


def _sorted_keys(keys: Sequence[str]) -> list[str]:
    """Keys in the order Jinja's ``dictsort`` writes them (case-insensitive, stable)."""
    return sorted(keys, key=str.lower)


def render_value(value: Any) -> str:
    """A JSON value in Gemma's syntax, as the templates' ``format_argument(…, escape_keys=False)`` writes it."""
    if isinstance(value, str):
        return QUOTE + value + QUOTE
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{render_value(value[k])}" for k in _sorted_keys(list(value))) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render_value(v) for v in value) + "]"
    return json.dumps(value)


def call_text(name: str, arguments: str) -> str:
    """One whole call as the templates render it, for ``name`` and its arguments (JSON text)."""
    try:
        args = json.loads(arguments)
    except ValueError:
        args = {}
    body = render_value(args if isinstance(args, Mapping) else {})
    return f"{OPEN}{CALL_PREFIX}{name}{body}{CLOSE}"


def _calls_text(calls: Sequence[Call]) -> str:
    return "".join(call_text(n, a) for n, a in calls)


def _scalar_json(token: str) -> str:
    """A bare value as JSON: numbers, ``true``/``false``/``null`` as written (Python's spellings too), else a string."""
    word = token.strip()
    spelled = {"True": "true", "False": "false", "None": "null"}.get(word, word)
    try:
        json.loads(spelled)
    except ValueError:
        return json.dumps(word, ensure_ascii=False)
    return spelled


class Gemma4Parser(JsonCallSection):
    """Content, then ``<|tool_call>call:NAME{…}<tool_call|>`` calls, the arguments turned into JSON as they stream.

    The arguments are read by a small state machine over Gemma's value syntax
    (a stack of open objects and arrays); each piece of JSON is sent as soon as
    it is decided, a string's characters as they come (held back only where
    they may begin ``<|"|>``). ``<|tool_response>`` after the calls ends the
    answer: what follows it would be an invented tool result.
    """

    triggers = (OPEN,)

    def __init__(self, enabled: bool = True) -> None:
        super().__init__(enabled)
        #: the open containers, "{" or "["
        self._stack: list[str] = []
        #: what the value syntax expects next: "key", "value", "next" (after a value), "string", "scalar"
        self._want = "value"
        self._token = ""

    # -- the call's frame ---------------------------------------------------------------------

    def _enter(self, trigger: str) -> None:
        self._pending = trigger
        self._mode = "prefix"

    def _section(self) -> None:
        mode = self._mode
        if mode == "prefix":
            if self._buf.startswith(CALL_PREFIX):
                self._buf = self._buf[len(CALL_PREFIX):]
                self._pending += CALL_PREFIX
                self._mode = "name"
            elif not CALL_PREFIX.startswith(self._buf):
                self._not_a_call()
        elif mode == "name":
            self._name()
        elif mode == "args":
            self._args()
        elif mode == "close":
            if self._expect(CLOSE) is not False:  # a missing closing token does not undo a whole call
                self._mode = "next"
        elif mode == "next":
            self._next()
        elif mode == "done":
            self._buf = ""

    def _name(self) -> None:
        end = self._buf.find("{")
        if end < 0:
            if len(self._buf) > 128 or not _NAME.match(self._buf or "x"):
                self._not_a_call()
            return
        name = self._buf[:end]
        if not _NAME.match(name):
            self._not_a_call()
            return
        self._buf = self._buf[end + 1:]
        self._pending = ""
        self._call = self.start_call(name)
        self._stack = ["{"]
        self._want = "key"
        self.add_arguments(self._call, "{")
        self._mode = "args"

    def _next(self) -> None:
        stripped = self._buf.lstrip()
        if not stripped:
            return
        for word, mode in ((OPEN, "prefix"), (RESPONSE, "done")):
            if stripped.startswith(word):
                self._buf = stripped[len(word):]
                self._pending = word
                self._mode = mode
                return
            if word.startswith(stripped):
                return
        self._mode = "content"

    # -- the arguments ------------------------------------------------------------------------

    def _send(self, piece: str) -> None:
        assert self._call is not None
        self.add_arguments(self._call, piece)

    def _args(self) -> None:
        while self._buf and self._mode == "args":
            want = self._want
            if want == "string":
                if not self._string():
                    return
                continue
            if want == "scalar":
                if not self._scalar():
                    return
                continue
            ch = self._buf[0]
            if ch.isspace():  # between tokens (the templates write none; a model outside the grammar may)
                self._buf = self._buf[1:]
            elif want == "key":
                if not self._key():
                    return
            elif want == "value":
                if self._buf.startswith(QUOTE):
                    self._buf = self._buf[len(QUOTE):]
                    self._send('"')
                    self._want = "string"
                elif QUOTE.startswith(self._buf):
                    return  # may still become a string's opening
                elif ch in "{[":
                    self._buf = self._buf[1:]
                    self._stack.append(ch)
                    self._send(ch)
                    self._want = "key" if ch == "{" else "value"
                elif ch == "]" and self._stack[-1] == "[":
                    self._close()
                elif ch in _SCALAR_END:
                    self._broken()
                else:
                    self._token = ""
                    self._want = "scalar"
            elif want == "next":
                self._buf = self._buf[1:]
                if ch == ",":
                    self._send(", ")
                    self._want = "key" if self._stack[-1] == "{" else "value"
                elif ch in "}]" and (ch == "}") == (self._stack[-1] == "{"):
                    self._buf = ch + self._buf
                    self._close()
                else:
                    self._buf = ch + self._buf
                    self._broken()

    def _key(self) -> bool:
        """A bare key up to ``:`` (or the object's end); False while undecided."""
        if self._buf[0] == "}":
            self._close()
            return True
        end = self._buf.find(":")
        if end < 0:
            if len(self._buf) > 128 or not _KEY.match(self._buf.rstrip() or "k"):
                self._broken()
                return True
            return False
        key = self._buf[:end].rstrip()
        if not _KEY.match(key):
            self._broken()
            return True
        self._buf = self._buf[end + 1:]
        self._send(json.dumps(key, ensure_ascii=False) + ": ")
        self._want = "value"
        return True

    def _string(self) -> bool:
        end = self._buf.find(QUOTE)
        if end >= 0:
            self._send(json.dumps(self._buf[:end], ensure_ascii=False)[1:])
            self._buf = self._buf[end + len(QUOTE):]
            self._want = "next"
            return True
        safe = len(self._buf) - partial_word_at_end(self._buf, (QUOTE,))
        if safe:
            self._send(json.dumps(self._buf[:safe], ensure_ascii=False)[1:-1])
            self._buf = self._buf[safe:]
        return False

    def _scalar(self) -> bool:
        at = next((i for i, c in enumerate(self._buf) if c in _SCALAR_END), -1)
        if at < 0:
            self._token += self._buf
            self._buf = ""
            if len(self._token) > 64:
                self._broken()
            return False
        self._token += self._buf[:at]
        self._buf = self._buf[at:]
        self._send(_scalar_json(self._token))
        self._token = ""
        self._want = "next"
        return True

    def _close(self) -> None:
        """The character at the buffer's start closes the innermost container."""
        ch = self._buf[0]
        self._buf = self._buf[1:]
        self._stack.pop()
        self._send(ch)
        self._want = "next"
        if not self._stack:
            self._call = None
            self._mode = "close"

    def _end_section(self) -> None:
        mode = self._mode
        if mode in ("prefix", "name"):
            self.truncated = mode == "name" and bool(self._buf.strip())
            self.emit_content(self._pending + self._buf)
        elif mode == "args":
            self.truncated = True  # the call keeps the arguments sent so far, never closed
        elif mode == "close" and self._expect(CLOSE) is None:
            self.emit_content(self._buf)
        elif mode == "next" and self._buf.strip() and not any(w.startswith(self._buf.strip())
                                                              for w in (OPEN, RESPONSE)):
            self.emit_content(self._buf)
        self._buf = ""


# -- the grammar -----------------------------------------------------------------------------


class _ValueGrammar:
    """One tool's arguments schema (as enforced) as rules that write it in Gemma's syntax."""

    def __init__(self, builder: GrammarBuilder, spec: ToolSpec, index: int) -> None:
        self.b = builder
        self.spec = spec
        self.where = f"tools[{index}].function.parameters"
        self.prefix = f"gemma4-tool{index}"
        self.count = 0

    def refuse(self, what: str, pointer: str) -> StyleError:
        at = f" at {pointer}" if pointer else ""
        return StyleError(f"{self.where}: the gemma4 format cannot write {what}{at}", param=self.where)

    def name(self) -> str:
        self.count += 1
        return f"{self.prefix}-v{self.count}"

    def arguments(self) -> str:
        try:
            top = enforced_schema(self.spec.parameters, objects=self.spec.objects, strict=self.spec.strict)
        except SchemaError as e:
            raise StyleError(f"{self.where}: {e}", param=self.where) from e
        if top is True or top == {}:
            top = {"type": "object"}
        if not isinstance(top, Mapping) or _types(top) != ["object"]:
            raise self.refuse("arguments that are not one object (its keys are the call's arguments)", "")
        return self.value(top, "")

    def value(self, schema: Any, pointer: str) -> str:
        if schema is True or schema == {}:
            return any_value(self.b)
        if schema is False or not isinstance(schema, Mapping):
            raise self.refuse("a schema that admits no value", pointer)
        keys = set(schema) - ANNOTATIONS
        if "enum" in schema or "const" in schema:
            return self.literals(schema, pointer)
        if "anyOf" in schema:
            odd = keys - {"anyOf"}
            if odd:
                raise self.refuse(f"anyOf beside {', '.join(sorted(odd))}", pointer)
            branches = [self.value(s, f"{pointer}/anyOf/{i}") for i, s in enumerate(schema["anyOf"])]
            return alternatives(self.b, self.name(), branches)
        types = _types(schema)
        if len(types) > 1:
            return alternatives(self.b, self.name(), [self.typed(schema, t, pointer) for t in types])
        if not types:
            if keys - {"type"}:
                raise self.refuse(f"an untyped schema with {', '.join(sorted(keys))}", pointer)
            return any_value(self.b)
        return self.typed(schema, types[0], pointer)

    def typed(self, schema: Mapping[str, Any], kind: str, pointer: str) -> str:
        if kind == "string":
            return self.string(schema, pointer)
        if kind == "object":
            return self.object(schema, pointer)
        if kind == "array":
            return self.array(schema, pointer)
        own = {k: v for k, v in schema.items() if k in _NUMBER_KEYS or k in ANNOTATIONS}
        odd = sorted(set(schema) - set(own) - _OBJECT_KEYS - _ARRAY_KEYS - _STRING_KEYS)
        if odd:
            raise self.refuse(", ".join(odd), pointer)
        try:  # a number, boolean or null is the same text in JSON and in Gemma's syntax
            return self.b.add_schema({**own, "type": kind}, self.name())
        except SchemaError as e:
            raise StyleError(f"{self.where}: {e}", param=self.where) from e

    def string(self, schema: Mapping[str, Any], pointer: str) -> str:
        odd = sorted(set(schema) - ANNOTATIONS - _STRING_KEYS - _OBJECT_KEYS - _ARRAY_KEYS - _NUMBER_KEYS)
        if odd:
            raise self.refuse(f"a string with {', '.join(odd)} (its text is raw)", pointer)
        lo = schema.get("minLength", 0)
        hi = schema.get("maxLength")
        if lo == 0 and hi is None:
            body = text_until(self.b, QUOTE, "gemma4")
        else:
            if (hi is not None and hi > DIRECT_REPEAT) or lo > DIRECT_REPEAT:
                raise self.refuse(f"string length bounds above {DIRECT_REPEAT}", pointer)
            if hi is not None and hi < lo:
                raise self.refuse("a string with maxLength below minLength", pointer)
            bound = f"{{{lo},}}" if hi is None else f"{{{lo},{hi}}}" if lo != hi else f"{{{lo}}}"
            body = f"[^<]{bound}"  # counted text: without '<', the closing token cannot occur inside it
        return self.b.add_rule(self.name(), f"{lit(QUOTE)} {body} {lit(QUOTE)}")

    def object(self, schema: Mapping[str, Any], pointer: str) -> str:
        odd = sorted(set(schema) - ANNOTATIONS - _OBJECT_KEYS - _STRING_KEYS - _ARRAY_KEYS - _NUMBER_KEYS)
        if odd:
            raise self.refuse(f"an object with {', '.join(odd)}", pointer)
        props = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        missing = required - set(props)
        if missing:
            raise self.refuse(f"required keys without a schema in 'properties' ({', '.join(sorted(missing))})",
                              pointer)
        items: list[tuple[str, bool]] = []
        for key in _sorted_keys(list(props)):
            if not _KEY.match(key):
                raise self.refuse(f"the key {key!r} bare", pointer)
            value = self.value(props[key], f"{pointer}/properties/{key}")
            items.append((f"{lit(key + ':')} {value}", key in required))
        return self.b.add_rule(self.name(), f'"{{" {self._members(items)} "}}"')

    def _members(self, items: list[tuple[str, bool]]) -> str:
        """Members in order, commas between those present: the required ones always, the optional ones or not."""
        after = ""  # the members from j on, once one was written
        first = '""'  # the members from j on, none written yet
        for item, required in reversed(items):
            rest_after = self.b.add_rule(self.name(), after or '""')
            if required:
                first = f"{item} {rest_after}"
                after = f'"," {item} {rest_after}'
            else:
                first_rule = self.b.add_rule(self.name(), first)
                first = f"{item} {rest_after} | {first_rule}"
                after = f'( "," {item} )? {rest_after}'
            first = self.b.add_rule(self.name(), first)
        return first

    def array(self, schema: Mapping[str, Any], pointer: str) -> str:
        odd = sorted(set(schema) - ANNOTATIONS - _ARRAY_KEYS - _OBJECT_KEYS - _STRING_KEYS - _NUMBER_KEYS)
        if odd:
            raise self.refuse(f"an array with {', '.join(odd)}", pointer)
        lo = schema.get("minItems", 0)
        hi = schema.get("maxItems")
        if lo > DIRECT_REPEAT or (hi is not None and hi > DIRECT_REPEAT):
            raise self.refuse(f"array length bounds above {DIRECT_REPEAT}", pointer)
        if hi is not None and hi < lo:
            raise self.refuse("an array with maxItems below minItems", pointer)
        item = self.value(schema.get("items", True), f"{pointer}/items")
        if hi == 0:
            return self.b.add_rule(self.name(), '"[" "]"')
        more = f"{{{max(lo - 1, 0)},}}" if hi is None else f"{{{max(lo - 1, 0)},{hi - 1}}}"
        listed = f'{item} ( "," {item} ){more}'
        return self.b.add_rule(self.name(), f'"[" {listed} "]"' if lo > 0 else f'"[" ( {listed} )? "]"')

    def literals(self, schema: Mapping[str, Any], pointer: str) -> str:
        values = list(schema["enum"]) if "enum" in schema else [schema["const"]]
        if "enum" in schema and "const" in schema:
            values = [v for v in values if v == schema["const"]]
        try:
            check = enforced_validator(schema)
        except SchemaError as e:
            raise StyleError(f"{self.where}: {e}", param=self.where) from e
        ok = [v for v in values if check(v) and not _has_quote(v)]
        if not ok:
            raise self.refuse("an enum with no value the rest of its schema allows", pointer)
        return self.b.add_rule(self.name(), " | ".join(lit(render_value(v)) for v in ok))


def _has_quote(value: Any) -> bool:
    """Whether a value holds a string the syntax cannot write (one containing ``<|"|>``) or a key it cannot."""
    if isinstance(value, str):
        return QUOTE in value
    if isinstance(value, Mapping):
        return any(not _KEY.match(k) or _has_quote(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_quote(v) for v in value)
    return False


def enforced_validator(schema: Mapping[str, Any]) -> Any:
    """Whether a literal value satisfies the (already enforced) schema node it is an enum value of."""
    from oaiproxy.grammar.enforced import validator

    check = validator(dict(schema))
    return lambda v: check.is_valid(v)


def _types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type")
    if kind is None:
        if "properties" in schema:
            return ["object"]
        if "items" in schema:
            return ["array"]
        return []
    return [kind] if isinstance(kind, str) else list(kind)


def any_value(builder: GrammarBuilder) -> str:
    """Any value in Gemma's syntax (for a schema that allows anything): the rules are shared."""
    value = "gemma4-any"
    text = text_until(builder, QUOTE, "gemma4")
    builder.add_named_rule("gemma4-any-key", "[A-Za-z_] [A-Za-z0-9_]{0,63}")
    builder.add_named_rule("gemma4-any-number",
                           '"-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?')
    builder.add_named_rule("gemma4-any-object",
                           f'"{{" ( gemma4-any-key ":" {value} ( "," gemma4-any-key ":" {value} )* )? "}}"')
    builder.add_named_rule("gemma4-any-array", f'"[" ( {value} ( "," {value} )* )? "]"')
    builder.add_named_rule(value, f'{lit(QUOTE)} {text} {lit(QUOTE)} | gemma4-any-number | "true" | "false" | '
                                  '"null" | gemma4-any-object | gemma4-any-array')
    return value


@register(detect_priority=108)
class Gemma4Style(DialectStyle):
    name = "gemma4"
    rule_prefix = "gemma4"
    fallback_prompt = "tools-gemma4.jinja"
    special_tokens = (OPEN, CLOSE, QUOTE, RESPONSE)
    stop_words = (RESPONSE, END_OF_TURN)
    samples = Samples(
        templates=("google-gemma-4-31B-it.jinja", "google-gemma-4-31B-it-interleaved.jinja"),
        calls=_calls_text,
        history_call=call_text,
        fallback_call=call_text,
        call_tokens=64,
        argument_key=lambda key: f"{key}:",
        outputs=(
            SampleOutput('I will check.<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|>'
                         "<|tool_response>", "I will check.", (("get_weather", {"city": "Paris"}),)),
            SampleOutput('<|tool_call>call:f{a:<|"|>x "y" <z>, {w}<|"|>,b:[1,-2.5e3,true,null],c:{d:False}}'
                         '<tool_call|><|tool_call>call:g{}<tool_call|>', "",
                         (("f", {"a": 'x "y" <z>, {w}', "b": [1, -2500.0, True, None], "c": {"d": False}}),
                          ("g", {}))),
            SampleOutput("<|tool_call> is followed by no call at all", "<|tool_call> is followed by no call at all"),
            SampleOutput('Text with <|"|> and <tool_call|> only', 'Text with <|"|> and <tool_call|> only'),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return all(marker in template_source for marker in (OPEN, CLOSE, QUOTE, CALL_PREFIX))

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """``<|tool_call>call:NAME{…}<tool_call|>``, one alternative per tool, then an optional ``<|tool_response>``."""
        bodies = [builder.add_rule(f"gemma4-tool{i}-call",
                                   f"{lit(CALL_PREFIX + spec.name)} {_ValueGrammar(builder, spec, i).arguments()}")
                  for i, spec in tools.indexed]
        body = alternatives(builder, "gemma4-call-body", bodies)
        call = builder.add_rule("gemma4-call", f"{lit(OPEN)} {body} {lit(CLOSE)}")
        return builder.add_rule("gemma4-calls", f'( {repeat_rule(call, chr(34) * 2, tools.max_calls)} ) '
                                                f"{lit(RESPONSE)}?")

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": OPEN}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return Gemma4Parser(enabled=tools.mode != "none")

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return call_text(name, arguments)

    def adjust_history(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Tool results as ``tool_responses`` of their call's message, for the template that reads only those.

        The interleaved template renders the legacy (Gemma-native) ``tool_responses``
        list on an assistant message and nothing of a ``tool`` message; the other
        one scans the ``tool`` messages after a call itself.
        """
        if "tool_responses" not in self.template.source or "loop_messages[k]['role'] != 'tool'" in \
                self.template.source:
            return messages
        out: list[dict[str, Any]] = []
        for message in messages:
            previous = out[-1] if out else None
            if message.get("role") == "tool" and previous is not None and previous.get("role") == "assistant" \
                    and previous.get("tool_calls"):
                names = {c.get("id"): (c.get("function") or {}).get("name") for c in previous["tool_calls"]}
                name = message.get("name") or names.get(message.get("tool_call_id")) or "unknown"
                responses = [*previous.get("tool_responses", []), {"name": name, "response": message.get("content")}]
                out[-1] = {**previous, "tool_responses": responses}
            else:
                out.append(message)
        return out


__all__ = ["Gemma4Parser", "Gemma4Style", "call_text", "render_value"]
