"""Kimi K3: ``<|open|>tools<|sep|><|open|>call tool="NAME" index="N"<|sep|><|open|>argument key=… type=…<|sep|>…``.

Kimi K3 writes every part of a message as a tagged element,
``<|open|>TAG attr="…"<|sep|>…<|close|>TAG<|sep|>``. An assistant message is its
reasoning (``think``, generated apart by the engine), its ``response`` and then,
when it calls tools, one ``tools`` element holding the calls::

    …answer text<|close|>response<|sep|><|open|>tools<|sep|>
    <|open|>call tool="get_weather" index="1"<|sep|>
    <|open|>argument key="city" type="string"<|sep|>Paris<|close|>argument<|sep|>
    <|close|>call<|sep|><|close|>tools<|sep|><|close|>message<|sep|>

(on one line). An argument's ``type`` is its JSON type; a string is written raw,
any other value as JSON. The template also writes arguments it cannot take
apart as one ``<|open|>json type="object"<|sep|>{…}<|close|>json<|sep|>``
element; the parser reads both, the grammar writes the typed elements (values
through :mod:`oaiproxy.dialects.xml_values`, so the tool's parameters must be an
object with plain ``properties``). Calls are numbered from 1 in ``index``.
The answer phase starts inside the ``response`` element (the reasoning's
``resume``); the structural tokens around the answer (``<|close|>response<|sep|>``,
``<|close|>message<|sep|>``) are dropped from the content. ``<|open|>tools<|sep|>``
is the lazy grammar's trigger word.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from oaiproxy.conversation.model import ToolSpec
from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.base import OutputParser
from oaiproxy.dialects.gbnf import alternatives, lit, repeat_rule
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import Call, SampleOutput, Samples
from oaiproxy.dialects.streaming import JsonCallSection
from oaiproxy.dialects.xml_values import is_raw_string, json_value_text, object_parameters, value_rule
from oaiproxy.grammar import GrammarBuilder

OPEN = "<|open|>"
CLOSE = "<|close|>"
SEP = "<|sep|>"


def open_tag(tag: str, attrs: Sequence[tuple[str, str]] = ()) -> str:
    """``<|open|>TAG k="v"…<|sep|>``, attribute values escaped as the template escapes them."""
    return OPEN + tag + "".join(f' {k}="{v.replace("&", "&amp;").replace(chr(34), "&quot;")}"'
                                for k, v in attrs) + SEP


def close_tag(tag: str) -> str:
    return CLOSE + tag + SEP


TOOLS_OPEN = open_tag("tools")
TOOLS_CLOSE = close_tag("tools")
CALL_CLOSE = close_tag("call")
ARG_CLOSE = close_tag("argument")
JSON_CLOSE = close_tag("json")
RESPONSE_OPEN = open_tag("response")
RESPONSE_CLOSE = close_tag("response")
MESSAGE_CLOSE = close_tag("message")
#: the structural tokens around the answer text, dropped from the content
FRAME = (RESPONSE_OPEN, RESPONSE_CLOSE, MESSAGE_CLOSE)
#: a tag's header longer than this without its ``<|sep|>`` is not a tag
MAX_TAG = 300

_ATTR = re.compile(r'\s*([A-Za-z_]+)="([^"]*)"')


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, Mapping) else "array"


def call_text(name: str, arguments: str, index: int = 1) -> str:
    """One call element as the template writes it (arguments as typed elements when they are an object)."""
    try:
        args = json.loads(arguments)
    except ValueError:
        args = None
    if isinstance(args, dict):
        body = "".join(open_tag("argument", [("key", k), ("type", _json_type(v))])
                       + (v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) + ARG_CLOSE
                       for k, v in args.items())
    else:
        body = open_tag("json", [("type", "object")]) + arguments + JSON_CLOSE
    return open_tag("call", [("tool", name), ("index", str(index))]) + body + CALL_CLOSE


def _calls(calls: Sequence[Call]) -> str:
    return RESPONSE_CLOSE + TOOLS_OPEN + "".join(call_text(n, a, k + 1) for k, (n, a) in enumerate(calls)) \
        + TOOLS_CLOSE + MESSAGE_CLOSE


def _tag_header(buf: str, tag: str) -> tuple[dict[str, str], int] | None | Literal[False]:
    """``<|open|>TAG attrs<|sep|>`` at the start of ``buf``: (attributes, length); None: undecided; False: not."""
    start = OPEN + tag
    if not buf.startswith(start):
        return None if start.startswith(buf) else False
    end = buf.find(SEP, len(start))
    if end < 0:
        return None if len(buf) <= MAX_TAG else False
    attrs: dict[str, str] = {}
    rest = buf[len(start):end]
    while rest.strip():
        found = _ATTR.match(rest)
        if found is None:
            return False
        attrs[found.group(1)] = html.unescape(found.group(2))
        rest = rest[found.end():]
    return attrs, end + len(SEP)


class KimiK3Parser(JsonCallSection):
    """The answer text (its frame tokens dropped), then the ``tools`` element's calls.

    A call is announced when its ``call`` tag is complete; each typed argument
    is sent once its closing tag is read, a ``json`` element's text as it
    streams.
    """

    def __init__(self, enabled: bool) -> None:
        super().__init__(True)  # the frame tokens are dropped even when tools are off
        self.triggers = (TOOLS_OPEN, *FRAME)
        self._tools = enabled
        self._args = 0
        self._arg: tuple[str, bool] = ("", True)

    def _enter(self, trigger: str) -> None:
        if trigger in FRAME:
            return
        if not self._tools:
            self.emit_content(trigger)
            return
        self._pending = trigger
        self._mode = "calls"

    def _section(self) -> None:
        getattr(self, "_mode_" + self._mode)()

    def _mode_calls(self) -> None:
        """Between calls: another ``call`` tag or the end of the section."""
        if self._buf.startswith(TOOLS_CLOSE):
            self._buf = self._buf[len(TOOLS_CLOSE):]
            self._pending = ""
            self._mode = "after"
            return
        header = _tag_header(self._buf, "call ")
        if header is None or (header is False and TOOLS_CLOSE.startswith(self._buf)):
            return
        if header is False or "tool" not in header[0]:
            if self._pending:
                self._not_a_call()
            else:
                self._mode = "after"  # the section's end is missing: the rest is content
            return
        attrs, length = header
        self._buf = self._buf[length:]
        self._pending = ""
        self._call = self.start_call(attrs["tool"])
        self._args = 0
        self._mode = "args"

    def _mode_args(self) -> None:
        """Inside a call: typed arguments, a ``json`` element, or the call's end."""
        call = self._call
        assert call is not None
        if self._buf.startswith(CALL_CLOSE):
            self._buf = self._buf[len(CALL_CLOSE):]
            self.add_arguments(call, "}" if self._args else "{}")
            self._call = None
            self._mode = "calls"
            return
        for tag in ("argument ", "json "):
            header = _tag_header(self._buf, tag)
            if header is None:
                return
            if header is False:
                continue
            attrs, length = header
            self._buf = self._buf[length:]
            if tag == "json ":
                self._begin_arguments(call)
                self._mode = "json"
            else:
                self._arg = (attrs.get("key", ""), attrs.get("type") == "string")
                self._mode = "value"
            return
        if not CALL_CLOSE.startswith(self._buf):
            self._broken()

    def _mode_value(self) -> None:
        end = self._buf.find(ARG_CLOSE)
        if end < 0:
            return
        call = self._call
        assert call is not None
        key, raw = self._arg
        self.add_arguments(call, ("{" if not self._args else ", ") + json.dumps(key, ensure_ascii=False) + ": "
                           + json_value_text(self._buf[:end], raw))
        self._args += 1
        self._buf = self._buf[end + len(ARG_CLOSE):]
        self._mode = "args"

    def _mode_json(self) -> None:
        if self._stream_arguments():
            self._open_call = None
            self._mode = "json_close"

    def _mode_json_close(self) -> None:
        if self._expect(JSON_CLOSE) is not False:
            self._args = -1  # the object is whole: the call's end adds nothing
            self._mode = "json_end"

    def _mode_json_end(self) -> None:
        if self._buf.startswith(CALL_CLOSE):
            self._buf = self._buf[len(CALL_CLOSE):]
            self._call = None
            self._mode = "calls"
        elif not CALL_CLOSE.startswith(self._buf):
            self._call = None
            self._mode = "calls"

    def _end_section(self) -> None:
        mode = self._mode
        if mode == "calls":
            if self._pending:
                self.truncated = bool(self._buf)
                self.emit_content(self._pending + self._buf)
            elif self._buf and not TOOLS_CLOSE.startswith(self._buf):
                self.emit_content(self._buf)
        elif mode in ("args", "value", "json"):
            self.truncated = True  # the call keeps the arguments it completed, in an object never closed
        self._buf = ""


@register(detect_priority=79)
class KimiK3Style(DialectStyle):
    name = "kimi-k3"
    rule_prefix = "kimik3"
    fallback_prompt = "tools-kimi-k3.jinja"
    special_tokens = (OPEN, CLOSE, SEP)
    samples = Samples(
        templates=("Kimi-K3.jinja",),
        calls=_calls,
        auto_calls=lambda calls: _calls(calls),
        history_call=lambda n, a: call_text(n, a),
        fallback_call=lambda n, a: call_text(n, a),
        call_tokens=160,  # every tag is a dozen tokens of a model without the special tokens
        argument_key=lambda key: open_tag("argument", [("key", key)])[: -len(SEP)],
        outputs=(
            SampleOutput(f"I will check.{RESPONSE_CLOSE}{TOOLS_OPEN}" + call_text("get_weather", '{"city": "Paris"}')
                         + f"{TOOLS_CLOSE}{MESSAGE_CLOSE}", "I will check.", (("get_weather", {"city": "Paris"}),)),
            SampleOutput(f"{RESPONSE_CLOSE}{TOOLS_OPEN}" + call_text("f", '{"a": "x < y", "b": [1, true]}')
                         + open_tag("call", [("tool", "g"), ("index", "2")]) + open_tag("json", [("type", "object")])
                         + '{"c": null}' + JSON_CLOSE + CALL_CLOSE + TOOLS_CLOSE, "",
                         (("f", {"a": "x < y", "b": [1, True]}), ("g", {"c": None}))),
            SampleOutput(f"Plain answer.{RESPONSE_CLOSE}{MESSAGE_CLOSE}", "Plain answer."),
            SampleOutput(f"{TOOLS_OPEN} is followed by no call", f"{TOOLS_OPEN} is followed by no call"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return all(m in template_source for m in (OPEN, CLOSE, SEP, "open_tag('tools')", "open_tag('call'"))

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """The ``tools`` element with up to ``max_calls`` calls, after the response's end (optional: from the
        trigger on it is already written) and before the message's end (optional: a stop may take it)."""
        call = alternatives(builder, "kimik3-call", [self._tool_rule(builder, i, spec) for i, spec in tools.indexed])
        calls = repeat_rule(call, '""', tools.max_calls)
        return builder.add_rule("kimik3-calls", f"{lit(RESPONSE_CLOSE)}? {lit(TOOLS_OPEN)} {calls} "
                                                f"{lit(TOOLS_CLOSE)} {lit(MESSAGE_CLOSE)}?")

    def _tool_rule(self, builder: GrammarBuilder, i: int, spec: ToolSpec) -> str:
        props, required = object_parameters(spec, i, "kimi-k3")
        parts = [lit(open_tag("call", [("tool", spec.name)])[: -len(SEP)] + ' index="'), '[1-9] [0-9]{0,2}',
                 lit('"' + SEP)]
        for j, (key, prop) in enumerate(props.items()):
            # a raw value holds no <|close|> (one '<' in the end text keeps text_until's automaton exact)
            value = value_rule(builder, prop, f"kimik3-tool{i}-p{j}", spec, i, key, end=CLOSE,
                               dialect="kimi-k3", text_prefix="kimik3")
            opener = open_tag("argument", [("key", key)])[: -len(SEP)] + ' type="'
            if is_raw_string(prop):
                kind = lit('string"' + SEP)
            else:
                kind = '( "number" | "boolean" | "null" | "object" | "array" ) ' + lit('"' + SEP)
            arg = builder.add_rule(f"kimik3-tool{i}-arg{j}", f"{lit(opener)} {kind} {value} {lit(ARG_CLOSE)}")
            parts.append(arg if key in required else f"{arg}?")
        parts.append(lit(CALL_CLOSE))
        return builder.add_rule(f"kimik3-tool{i}-call", " ".join(parts))

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": TOOLS_OPEN}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return KimiK3Parser(enabled=tools.mode != "none")

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return TOOLS_OPEN + call_text(name, arguments) + TOOLS_CLOSE


__all__ = ["KimiK3Parser", "KimiK3Style", "call_text"]
