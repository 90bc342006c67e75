"""MiniMax M2/M3 / DeepSeek V3.2/V4 / muse-glimmer / MiniCPM5: ``<invoke name="NAME">`` with named parameter elements.

Calls written as XML-like elements with named parameters: one family of
formats, one implementation, one registered style per tag set:

* MiniMax-M2: ``<minimax:tool_call>`` around ``<invoke name="…">`` and
  ``<parameter name="…">VALUE</parameter>`` elements, one per line;
* MiniMax-M3: the same elements, each tag after MiniMax's ``]<]minimax[>[``
  separator and each parameter an element named after its key
  (``]<]minimax[>[<city>Paris]<]minimax[>[</city>``);
* DeepSeek V3.2 and V4 (DSML): ``<｜DSML｜function_calls>`` (V3.2) or
  ``<｜DSML｜tool_calls>`` (V4) around ``<｜DSML｜invoke name="…">`` and
  ``<｜DSML｜parameter name="…" string="true|false">``, the attribute saying
  whether the value is a raw string;
* muse-glimmer (ATEM): ``<atem:function_calls>`` around ``<atem:invoke …>`` and
  ``<atem:parameter …>``, in an assistant message addressed ``to=NAME``;
* MiniCPM5: bare ``<function name="…"><param name="…">VALUE</param></function>``
  calls on lines of their own, a string with ``<``, ``&`` or a newline in a
  ``<![CDATA[…]]>`` block;
* Seed-OSS (in :mod:`oaiproxy.dialects.seed_oss`): ``<seed:tool_call>`` blocks of
  ``<function=NAME>`` and ``<parameter=KEY>VALUE</parameter>``.

The templates agree on the values (:mod:`oaiproxy.dialects.xml_values`): a
string raw, any other value as JSON. The grammar writes each tool's parameters
in the order its schema declares them, the required ones always, the optional
ones or not, and never an undeclared one; several calls share one section where
the format has one. The parser reads a call whose name is complete as started,
and sends its arguments (a JSON object built from the parameters) when the call
closes. A value is read raw when the format says so (DSML's ``string``
attribute) or the tool declares the parameter a string, else as JSON (or as a
string when it is not JSON: text the grammar did not write).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from oaiproxy.conversation.model import ToolSpec
from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.base import OutputParser, StyleError
from oaiproxy.dialects.gbnf import alternatives, lit, repeat_rule
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import Call, SampleOutput, Samples
from oaiproxy.dialects.streaming import JsonCallSection, partial_word_at_end
from oaiproxy.dialects.xml_values import (
    is_raw_string,
    json_string_piece,
    json_value_text,
    object_parameters,
    raw_string_keys,
    text_until,
    value_rule,
)
from oaiproxy.grammar import GrammarBuilder

_NAME_LIMIT = 128
CDATA_OPEN = "<![CDATA["
CDATA_CLOSE = "]]>"
#: characters MiniCPM5's template puts a string in CDATA for
_CDATA_WORTHY = re.compile(r"[<&\n]")
_STRING_ATTR = re.compile(r'\s*string="(true|false)"\s*\Z')
#: schema types the MiniMax-M3 format writes as plain text (it writes objects and arrays as nested elements)
_SCALAR_TYPES = frozenset({"integer", "number", "boolean"})


@dataclass(frozen=True)
class XmlFormat:
    """One tag set of the family: the exact text the grammar writes, and what the parser looks for.

    A call is ``call_open NAME call_name_end`` + its parameters + ``call_close``;
    a parameter is ``param_open KEY param_name_end VALUE value_end param_tail``
    (``{key}`` in ``param_tail`` is the key). With a ``section_open``, calls sit
    in sections (several per section, or one each with ``one_call_per_section``,
    sections then separated by ``section_sep``); without one, calls follow each
    other separated by ``call_sep``.
    """

    #: the dialect's name, in errors
    dialect: str
    section_open: str
    section_close: str
    call_open: str
    call_name_end: str
    call_close: str
    param_open: str
    param_name_end: str
    value_end: str
    param_tail: str = ""
    #: between two calls in a section (or, without sections, between two calls)
    call_sep: str = ""
    one_call_per_section: bool = False
    section_sep: str = ""
    #: DSML: the parameter's opening tag carries ``string="true"`` (a raw string) or ``string="false"`` (JSON)
    string_attr: bool = False
    #: MiniCPM5: a free string with ``<``, ``&`` or a newline is written in a CDATA block
    cdata: bool = False
    #: values may be Python literals (``True``, ``None``, ``{'a': 1}``): the template writes ``| string``
    python_values: bool = False
    #: MiniMax-M3: only scalar values (the format writes objects and arrays as nested elements)
    scalars_only: bool = False
    #: muse ATEM: the answer opens with ``" to=" RECIPIENT "<|message|>"``; the required grammar writes it
    header: tuple[str, str] | None = None

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """The section's tags, which the models' vocabularies hold as tokens."""
        return (self.section_open.rstrip("\n"), self.section_close) if self.section_open else ()

    @property
    def trigger(self) -> str:
        """What opens the calls: the section's tag (without its newline), else the call's opening."""
        return (self.section_open or self.call_open).rstrip("\n")

    def name_end(self, raw: bool) -> str:
        """What follows a parameter's key: DSML says there whether the value is a raw string."""
        if self.string_attr:
            return f'" string="{"true" if raw else "false"}">'
        return self.param_name_end

    def tail(self, key: str) -> str:
        return self.param_tail.replace("{key}", key)

    # -- writing calls (templates' rendering, samples, history fallback) -----------------------

    def value_text(self, value: Any) -> str:
        if isinstance(value, str):
            if self.cdata and _CDATA_WORTHY.search(value):
                return f"{CDATA_OPEN}{value}{CDATA_CLOSE}"
            return value
        return json.dumps(value, ensure_ascii=False)

    def call_text(self, name: str, arguments: str) -> str:
        """One call (no section around it), as the grammar writes it."""
        try:
            args = json.loads(arguments)
        except ValueError:
            args = {}
        params = "".join(
            f"{self.param_open}{k}{self.name_end(isinstance(v, str))}{self.value_text(v)}{self.value_end}"
            f"{self.tail(k)}" for k, v in (args.items() if isinstance(args, dict) else ()))
        return f"{self.call_open}{name}{self.call_name_end}{params}{self.call_close}"

    def calls_text(self, calls: Sequence[Call]) -> str:
        """A whole answer of these calls (without the answer header), as the grammar writes it."""
        texts = [self.call_text(n, a) for n, a in calls]
        if not self.section_open:
            return self.call_sep.join(texts)
        if self.one_call_per_section:
            return self.section_sep.join(self.section_open + t + self.section_close for t in texts)
        return self.section_open + self.call_sep.join(texts) + self.section_close

    def samples(self, templates: tuple[str, ...], outputs: tuple[SampleOutput, ...], call_tokens: int,
                **more: Any) -> Samples:
        """A style's test material, its call texts written by this format as the grammar writes them (every
        template of the family renders a past call that way); ``more``: other :class:`Samples` fields."""
        fields: dict[str, Any] = {
            "calls": self.calls_text,
            "history_call": lambda name, arguments: self.call_text(name, arguments).rstrip("\n"),
            # a past call spelled out for a template without tool support (XmlCallsStyle.format_call_text)
            "fallback_call": lambda name, arguments: self.calls_text([(name, arguments)]),
            "argument_key": lambda key: f"{self.param_open}{key}{self.param_name_end[0]}",
        }
        return Samples(templates=templates, call_tokens=call_tokens, outputs=outputs, **{**fields, **more})


class XmlCallsParser(JsonCallSection):
    """Content, then calls in an :class:`XmlFormat`; see the module docstring for what is read how."""

    def __init__(self, fmt: XmlFormat, enabled: bool, raw_params: Mapping[str, frozenset[str]]) -> None:
        super().__init__(enabled)
        self.triggers = (fmt.trigger,)
        self._fmt = fmt
        self._raw_params = raw_params
        #: how many parameters of the call were sent (the first opens the object)
        self._sent = 0
        self._key = ""
        self._key_raw: bool | None = None
        if fmt.header is not None:
            self._mode = "header"

    # -- the modes --------------------------------------------------------------------------

    def _enter(self, trigger: str) -> None:
        self._pending = trigger
        self._mode = "cname" if not self._fmt.section_open else "calls"

    def _section(self) -> None:
        step: dict[str, Callable[[], None]] = {
            "header": self._header, "calls": self._calls, "cname": self._cname, "params": self._params_step,
            "pname": self._pname, "pstart": self._pstart, "pcdata": self._pcdata, "praw": self._praw,
            "pvalue": self._pvalue, "ptail": self._ptail, "close": self._section_close}
        step[self._mode]()

    def _header(self) -> None:
        """The answer's ``to=RECIPIENT<|message|>`` opening (muse ATEM) is the format's, not content."""
        assert self._fmt.header is not None
        opener, closer = self._fmt.header
        text = self._buf
        if not text.startswith(opener):
            if not opener.startswith(text):
                self._mode = "content"  # no header: all of it is the answer
            return
        end = text.find(closer, len(opener))
        recipient = text[len(opener): end if end >= 0 else len(text)]
        if end < 0:
            tag = recipient.find("<")
            cut = tag >= 0 and not closer.startswith(recipient[tag:])
            if len(recipient) > _NAME_LIMIT or "\n" in recipient or cut:
                self._mode = "content"
            return
        if recipient and len(recipient) <= _NAME_LIMIT and "<" not in recipient and "\n" not in recipient:
            self._buf = text[end + len(closer):]
        self._mode = "content"

    def _calls(self) -> None:
        """In a section, before a call: the call's opening, or the section's end."""
        fmt = self._fmt
        before = self._buf
        stripped = before.lstrip()
        if stripped.startswith(fmt.call_open):
            self._pending += before[: len(before) - len(stripped) + len(fmt.call_open)]
            self._buf = stripped[len(fmt.call_open):]
            self._mode = "cname"
        elif stripped.startswith(fmt.section_close) and not self._pending:
            self._buf = stripped[len(fmt.section_close):]
            self._mode = "after"
        elif stripped and not fmt.call_open.startswith(stripped) and not (
                not self._pending and fmt.section_close.startswith(stripped)):
            if self._pending:
                self._not_a_call()
            else:
                self._mode = "content"  # text after a section's last call, instead of its end

    def _cname(self) -> None:
        fmt = self._fmt
        stop = fmt.call_name_end[0]
        end = self._buf.find(stop)
        if end < 0:
            if len(self._buf) > _NAME_LIMIT or "<" in self._buf or "\n" in self._buf:
                self._not_a_call()  # the text stays, read as content (it may hold a trigger)
            return
        name = self._buf[:end]
        rest = self._buf[end:]
        literal = fmt.call_name_end.rstrip("\n")
        if not rest.startswith(literal):
            if not literal.startswith(rest):
                self._not_a_call()
            return
        if not name or len(name) > _NAME_LIMIT or "<" in name or "\n" in name:
            self._not_a_call()
            return
        self._buf = rest[len(literal):]
        self._pending = ""
        self._call = self.start_call(name)
        self._sent = 0
        self._mode = "params"

    def _params_step(self) -> None:
        fmt = self._fmt
        stripped = self._buf.lstrip()
        close = fmt.call_close.rstrip("\n")
        if stripped.startswith(close):  # first: MiniMax-M3's parameter opening is a prefix of it
            self._buf = stripped[len(close):]
            self._close_call()
        elif stripped.startswith(fmt.param_open) and not close.startswith(stripped):
            self._buf = stripped[len(fmt.param_open):]
            self._mode = "pname"
        elif stripped and not fmt.param_open.startswith(stripped) and not close.startswith(stripped):
            self._broken()

    def _pname(self) -> None:
        fmt = self._fmt
        stop = fmt.param_name_end[0]
        end = self._buf.find(stop)
        close = self._buf.find(">", end)
        if end < 0 or close < 0:
            if len(self._buf) > 2 * _NAME_LIMIT or "\n" in self._buf or "<" in self._buf:
                self._broken()
            return
        key, attrs = self._buf[:end], self._buf[end + 1: close]
        self._key_raw = None
        if fmt.string_attr:
            found = _STRING_ATTR.match(attrs)
            if found is None or not attrs.endswith('"'):
                self._broken()
                return
            self._key_raw = found.group(1) == "true"
        elif self._buf[end: close + 1] != fmt.param_name_end:
            self._broken()
            return
        if not key or len(key) > _NAME_LIMIT or "<" in key or "\n" in key:
            self._broken()
            return
        self._key = key
        self._buf = self._buf[close + 1:]
        call = self._call
        assert call is not None
        raw = self._key_raw if self._key_raw is not None else key in self._raw_params.get(call.name, frozenset())
        if raw:  # a raw string streams as it is written
            self._send_key()
            self.add_arguments(call, '"')
            self._mode = "pstart" if fmt.cdata else "praw"
        else:
            self._mode = "pvalue"

    def _send_key(self) -> None:
        assert self._call is not None
        self.add_arguments(self._call, ("{" if not self._sent else ", ") + json.dumps(self._key, ensure_ascii=False)
                           + ": ")
        self._sent += 1

    def _pstart(self) -> None:
        """MiniCPM5: a raw string may open a CDATA block."""
        if CDATA_OPEN.startswith(self._buf):
            return  # may still open one
        if self._buf.startswith(CDATA_OPEN):
            self._buf = self._buf[len(CDATA_OPEN):]
            self._mode = "pcdata"
        else:
            self._mode = "praw"

    def _pcdata(self) -> None:
        """Inside CDATA: everything up to ``]]>`` is the string's (a closing tag included); raw text may follow."""
        if self._stream_until(CDATA_CLOSE):
            self._mode = "praw"

    def _praw(self) -> None:
        if self._stream_until(self._fmt.value_end):
            assert self._call is not None
            self.add_arguments(self._call, '"')
            self._mode = "ptail"

    def _stream_until(self, end: str) -> bool:
        """Send the raw text before ``end`` as the inside of a JSON string; True once ``end`` was read.

        A tail that may be the beginning of ``end`` is held back.
        """
        call = self._call
        assert call is not None
        buf = self._buf
        at = buf.find(end)
        if at >= 0:
            self.add_arguments(call, json_string_piece(buf[:at]))
            self._buf = buf[at + len(end):]
            return True
        keep = partial_word_at_end(buf, (end,))
        self.add_arguments(call, json_string_piece(buf[: len(buf) - keep]))
        self._buf = buf[len(buf) - keep:]
        return False

    def _pvalue(self) -> None:
        """A value that is not a raw string: sent whole, as JSON, once its end tag is read."""
        if self._fmt.cdata and (CDATA_OPEN.startswith(self._buf) or self._buf.startswith(CDATA_OPEN)):
            if len(self._buf) < len(CDATA_OPEN):
                return  # may still open a CDATA block: a string, whatever the schema says
            self._send_key()
            assert self._call is not None
            self.add_arguments(self._call, '"')
            self._buf = self._buf[len(CDATA_OPEN):]
            self._mode = "pcdata"
            return
        end = self._buf.find(self._fmt.value_end)
        if end < 0:
            return
        value = self._buf[:end]
        self._buf = self._buf[end + len(self._fmt.value_end):]
        self._send_key()
        assert self._call is not None
        self.add_arguments(self._call, json_value_text(value, False, python_literals=self._fmt.python_values))
        self._mode = "ptail"

    def _ptail(self) -> None:
        tail = self._fmt.tail(self._key).strip()
        if not tail:
            self._mode = "params"
            return
        done = self._expect(tail)
        if done is None:
            self._broken()
        elif done:
            self._mode = "params"

    def _close_call(self) -> None:
        assert self._call is not None
        self.add_arguments(self._call, "}" if self._sent else "{}")
        self._call = None
        fmt = self._fmt
        if not fmt.section_open:
            self._mode = "after"
        elif fmt.one_call_per_section:
            self._mode = "close"
        else:
            self._mode = "calls"

    def _section_close(self) -> None:
        if self._expect(self._fmt.section_close) is not False:  # a missing closing tag does not undo a call
            self._mode = "after"

    def _end_section(self) -> None:
        mode = self._mode
        if mode == "header":
            self.emit_content(self._buf)
        elif mode in ("calls", "cname") and self._pending:
            self.truncated = mode == "cname" and bool(self._buf.strip())
            self.emit_content(self._pending + self._buf)
        elif mode == "calls":
            if self._expect(self._fmt.section_close) is None:
                self.emit_content(self._buf)
        elif mode in ("params", "pname", "pstart", "pcdata", "praw", "pvalue", "ptail"):
            self.truncated = True  # the call keeps what was sent, in an object never closed
            assert self._call is not None
            if mode in ("pcdata", "praw"):
                self.add_arguments(self._call, json_string_piece(self._buf))
            elif not self._sent:
                self.add_arguments(self._call, "{")
        elif mode == "close" and self._expect(self._fmt.section_close) is None:
            self.emit_content(self._buf)
        self._buf = ""


class XmlCallsStyle(DialectStyle):
    """A dialect of the family: subclasses set ``fmt`` (and their name, samples, detection)."""

    fmt: ClassVar[XmlFormat]

    # -- grammar ----------------------------------------------------------------------------

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """The calls, one alternative per tool, up to ``max_calls`` of them (in one section where there is one)."""
        fmt, p = self.fmt, self.rule_prefix
        call = alternatives(builder, f"{p}-call", [self._tool_rule(builder, i, spec) for i, spec in tools.indexed])
        if not fmt.section_open:
            calls = builder.add_rule(f"{p}-calls", repeat_rule(call, lit(fmt.call_sep) if fmt.call_sep else '""',
                                                               tools.max_calls))
        elif fmt.one_call_per_section:
            section = builder.add_rule(f"{p}-section",
                                       f"{lit(fmt.section_open)} {call} {lit(fmt.section_close)}")
            sep = lit(fmt.section_sep) if fmt.section_sep else '""'
            calls = builder.add_rule(f"{p}-calls", repeat_rule(section, sep, tools.max_calls))
        else:
            sep = lit(fmt.call_sep) if fmt.call_sep else '""'
            calls = builder.add_rule(f"{p}-calls", f"{lit(fmt.section_open)} "
                                                   f"{repeat_rule(call, sep, tools.max_calls)} "
                                                   f"{lit(fmt.section_close)}")
        if fmt.header is None:
            return calls
        # the answer opens with the header: forced calls write it; under auto the model writes it before the
        # trigger, where the lazy grammar starts (so it is optional there)
        opener, closer = fmt.header
        names = " | ".join(lit(spec.name) for _, spec in tools.indexed)
        optional = "?" if tools.mode == "auto" else ""
        return builder.add_rule(f"{p}-answer", f"( {lit(opener)} ( {names} ) {lit(closer)} ){optional} {calls}")

    def _tool_rule(self, builder: GrammarBuilder, i: int, spec: ToolSpec) -> str:
        fmt, p = self.fmt, self.rule_prefix
        props, required = object_parameters(spec, i, self.name)
        parts = [lit(f"{fmt.call_open}{spec.name}{fmt.call_name_end}")]
        for j, (key, prop) in enumerate(props.items()):
            raw = is_raw_string(prop)
            value = self._value_rule(builder, prop, f"{p}-tool{i}-p{j}", spec, i, key)
            param = builder.add_rule(f"{p}-tool{i}-param{j}",
                                     f"{lit(fmt.param_open + key + fmt.name_end(raw))} {value} "
                                     f"{lit(fmt.value_end + fmt.tail(key))}")
            parts.append(param if key in required else f"{param}?")
        parts.append(lit(fmt.call_close))
        return builder.add_rule(f"{p}-tool{i}-call", " ".join(parts))

    def _value_rule(self, builder: GrammarBuilder, prop: Any, name: str, spec: ToolSpec, i: int, key: str) -> str:
        fmt, p = self.fmt, self.rule_prefix
        if fmt.scalars_only and not is_raw_string(prop) and not _is_scalar(prop):
            where = f"tools[{i}].function.parameters"
            raise StyleError(f"{where}: parameter {key!r}: the {self.name} format writes objects and arrays as "
                             "nested elements, which oaiproxy does not generate; only strings, numbers and "
                             "booleans can be parameters", param=where)
        rule = value_rule(builder, prop, name, spec, i, key, end=fmt.value_end, dialect=self.name,
                          text_prefix=p)
        if fmt.cdata and _is_free_text(prop):
            # free text, as the template writes it: plain without '<', '&' or a newline, else in CDATA
            cdata = text_until(builder, CDATA_CLOSE, f"{p}-cdata")
            plain = builder.add_rule(f"{p}-plain", '[^<&\\n]*')
            return builder.add_rule(f"{p}-free", f"{plain} | {lit(CDATA_OPEN)} {cdata} {lit(CDATA_CLOSE)}")
        return rule

    # -- the rest of the dialect --------------------------------------------------------------

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": self.fmt.trigger}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        raw = {spec.name: raw_string_keys(spec) for _, spec in tools.indexed}
        return XmlCallsParser(self.fmt, enabled=tools.mode != "none", raw_params=raw)

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return self.fmt.calls_text([(name, arguments)])


def _is_free_text(prop: Any) -> bool:
    """Whether ``prop`` is a string schema with no constraint the value grammar holds it to."""
    return is_raw_string(prop) and not {"enum", "const", "maxLength"} & set(prop) and not prop.get("minLength")


def _is_scalar(prop: Any) -> bool:
    """Whether every value of ``prop`` is a number or a boolean (written the same as text and as JSON)."""
    if not isinstance(prop, Mapping):
        return False
    kind = prop.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    return bool(kinds) and kinds <= _SCALAR_TYPES


# -- the tag sets -------------------------------------------------------------------------------

MINIMAX_M2 = XmlFormat(
    dialect="minimax-m2", section_open="<minimax:tool_call>\n", section_close="</minimax:tool_call>",
    call_open='<invoke name="', call_name_end='">\n', call_close="</invoke>\n",
    param_open='<parameter name="', param_name_end='">', value_end="</parameter>", param_tail="\n")


@register(detect_priority=70)
class MiniMaxM2Style(XmlCallsStyle):
    name = "minimax-m2"
    rule_prefix = "minimax"
    fmt = MINIMAX_M2
    special_tokens = MINIMAX_M2.special_tokens
    fallback_prompt = "tools-minimax-m2.jinja"
    samples = MINIMAX_M2.samples(
        templates=("MiniMax-M2.jinja",),
        call_tokens=64,
        outputs=(
            SampleOutput('I will check.\n<minimax:tool_call>\n<invoke name="get_weather">\n'
                         '<parameter name="city">Paris</parameter>\n</invoke>\n</minimax:tool_call>',
                         "I will check.\n", (("get_weather", {"city": "Paris"}),)),
            SampleOutput('<minimax:tool_call>\n<invoke name="f">\n<parameter name="a">x < y</parameter>\n'
                         '<parameter name="b">2</parameter>\n</invoke>\n<invoke name="g">\n</invoke>\n'
                         "</minimax:tool_call>", "", (("f", {"a": "x < y", "b": 2}), ("g", {}))),
            SampleOutput("<minimax:tool_call> is followed by no invoke at all",
                         "<minimax:tool_call> is followed by no invoke at all"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return "<minimax:tool_call>" in template_source and '<invoke name="' in template_source


MINIMAX_NS = "]<]minimax[>["
MINIMAX_M3 = XmlFormat(
    dialect="minimax-m3", section_open=f"{MINIMAX_NS}<tool_call>\n", section_close=f"{MINIMAX_NS}</tool_call>",
    call_open=f'{MINIMAX_NS}<invoke name="', call_name_end='">', call_close=f"{MINIMAX_NS}</invoke>\n",
    param_open=f"{MINIMAX_NS}<", param_name_end=">", value_end=MINIMAX_NS, param_tail="</{key}>",
    scalars_only=True)


@register(detect_priority=71)
class MiniMaxM3Style(XmlCallsStyle):
    name = "minimax-m3"
    rule_prefix = "minimax3"
    fmt = MINIMAX_M3
    special_tokens = MINIMAX_M3.special_tokens
    fallback_prompt = "tools-minimax-m3.jinja"
    samples = MINIMAX_M3.samples(
        templates=("MiniMax-M3.jinja",),
        call_tokens=96,
        outputs=(
            SampleOutput(f"I will check.{MINIMAX_NS}<tool_call>\n{MINIMAX_NS}<invoke name=\"get_weather\">"
                         f"{MINIMAX_NS}<city>Paris{MINIMAX_NS}</city>{MINIMAX_NS}</invoke>\n{MINIMAX_NS}</tool_call>",
                         "I will check.", (("get_weather", {"city": "Paris"}),)),
            SampleOutput(f"{MINIMAX_NS}<tool_call>\n{MINIMAX_NS}<invoke name=\"f\">{MINIMAX_NS}<a>x < y"
                         f"{MINIMAX_NS}</a>{MINIMAX_NS}<b>2{MINIMAX_NS}</b>{MINIMAX_NS}</invoke>\n"
                         f"{MINIMAX_NS}<invoke name=\"g\">{MINIMAX_NS}</invoke>\n{MINIMAX_NS}</tool_call>", "",
                         (("f", {"a": "x < y", "b": 2}), ("g", {}))),
            SampleOutput(f"{MINIMAX_NS}<tool_call> and then no invoke", f"{MINIMAX_NS}<tool_call> and then no invoke"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return MINIMAX_NS in template_source and '<invoke name="' in template_source


DSML = "｜DSML｜"


def _dsml(section: str) -> XmlFormat:
    return XmlFormat(
        dialect=f"DSML {section}", section_open=f"<{DSML}{section}>\n", section_close=f"</{DSML}{section}>",
        call_open=f'<{DSML}invoke name="', call_name_end='">\n', call_close=f"</{DSML}invoke>\n",
        param_open=f'<{DSML}parameter name="', param_name_end='">', value_end=f"</{DSML}parameter>",
        param_tail="\n", string_attr=True)


DSML_FUNCTION_CALLS = _dsml("function_calls")
DSML_TOOL_CALLS = _dsml("tool_calls")


def _dsml_samples(fmt: XmlFormat, templates: tuple[str, ...]) -> Samples:
    o, c = fmt.section_open, fmt.section_close
    return fmt.samples(
        templates=templates,
        call_tokens=128,  # every DSML tag is several tokens on the default model (64 cut a two-parameter call)
        outputs=(
            SampleOutput(f'I will check.\n\n{o}<{DSML}invoke name="get_weather">\n<{DSML}parameter name="city" '
                         f'string="true">Paris</{DSML}parameter>\n</{DSML}invoke>\n{c}', "I will check.\n\n",
                         (("get_weather", {"city": "Paris"}),)),
            # the attribute decides: "2" with string="true" stays a string, whatever the schema says
            SampleOutput(f'{o}<{DSML}invoke name="f">\n<{DSML}parameter name="a" string="true">x < y'
                         f'</{DSML}parameter>\n<{DSML}parameter name="b" string="false">2</{DSML}parameter>\n'
                         f'<{DSML}parameter name="c" string="true">2</{DSML}parameter>\n</{DSML}invoke>\n'
                         f'<{DSML}invoke name="g">\n</{DSML}invoke>\n{c}', "",
                         (("f", {"a": "x < y", "b": 2, "c": "2"}), ("g", {}))),
            SampleOutput(f"{o.strip()} is followed by no invoke", f"{o.strip()} is followed by no invoke"),
        ),
    )


@register(detect_priority=72)
class DeepSeekV32Style(XmlCallsStyle):
    """DeepSeek V3.2's DSML, calls in ``<｜DSML｜function_calls>``."""

    name = "deepseek-v3.2"
    rule_prefix = "dsml"
    fmt = DSML_FUNCTION_CALLS
    special_tokens = DSML_FUNCTION_CALLS.special_tokens
    fallback_prompt = "tools-deepseek-v3.2.jinja"
    samples = _dsml_samples(DSML_FUNCTION_CALLS, ("deepseek-ai-DeepSeek-V3.2.jinja",))

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return DSML in template_source and "function_calls>" in template_source


@register(detect_priority=69)
class DeepSeekV4Style(XmlCallsStyle):
    """DeepSeek V4's DSML, calls in ``<｜DSML｜tool_calls>`` (asked after V3.2, whose templates say both)."""

    name = "deepseek-v4"
    rule_prefix = "dsml4"
    fmt = DSML_TOOL_CALLS
    special_tokens = DSML_TOOL_CALLS.special_tokens
    fallback_prompt = "tools-deepseek-v4.jinja"
    samples = _dsml_samples(DSML_TOOL_CALLS, ("deepseek-ai-DeepSeek-V4.jinja",
                                              "deepseek-ai-DeepSeek-V4-Flash-0731.jinja"))

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return DSML in template_source and "tool_calls>" in template_source


ATEM = XmlFormat(
    dialect="muse-atem", section_open="<atem:function_calls>\n", section_close="</atem:function_calls>",
    call_open='<atem:invoke name="', call_name_end='">\n', call_close="</atem:invoke>\n",
    param_open='<atem:parameter name="', param_name_end='">', value_end="</atem:parameter>", param_tail="\n",
    header=(" to=", "<|message|>"))


@register(detect_priority=74)
class MuseAtemStyle(XmlCallsStyle):
    """muse-glimmer's ATEM calls: the answer is addressed ``to=NAME``, then an ``<atem:function_calls>`` block."""

    name = "muse-atem"
    rule_prefix = "atem"
    fmt = ATEM
    special_tokens = ATEM.special_tokens
    fallback_prompt = "tools-muse-atem.jinja"
    samples = ATEM.samples(
        templates=("muse-glimmer.jinja",),
        # the required answer opens with the recipient header; under auto the calls follow free text
        calls=lambda calls: f" to={calls[0][0]}<|message|>" + ATEM.calls_text(calls),
        auto_calls=ATEM.calls_text,
        call_tokens=72,
        outputs=(
            SampleOutput(' to=get_weather<|message|><atem:function_calls>\n<atem:invoke name="get_weather">\n'
                         '<atem:parameter name="city">Paris</atem:parameter>\n</atem:invoke>\n'
                         "</atem:function_calls>", "", (("get_weather", {"city": "Paris"}),)),
            SampleOutput('I will check.<atem:function_calls>\n<atem:invoke name="f">\n<atem:parameter name="a">'
                         'x < y</atem:parameter>\n<atem:parameter name="b">2</atem:parameter>\n</atem:invoke>\n'
                         '<atem:invoke name="g">\n</atem:invoke>\n</atem:function_calls>', "I will check.",
                         (("f", {"a": "x < y", "b": 2}), ("g", {}))),
            SampleOutput(" to=user<|message|>It is sunny.", "It is sunny."),
            SampleOutput(" tomorrow <atem:function_calls> is no call", " tomorrow <atem:function_calls> is no call"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return "<atem:invoke name=" in template_source


MINICPM = XmlFormat(
    dialect="minicpm5", section_open="", section_close="", call_open='<function name="', call_name_end='">',
    call_close="</function>", param_open='<param name="', param_name_end='">', value_end="</param>",
    call_sep="\n", cdata=True, python_values=True)


@register(detect_priority=68)
class MiniCPM5Style(XmlCallsStyle):
    """MiniCPM5: bare ``<function name=…><param name=…>`` calls, strings with markup in CDATA."""

    name = "minicpm5"
    rule_prefix = "minicpm"
    fmt = MINICPM
    special_tokens = MINICPM.special_tokens
    fallback_prompt = "tools-minicpm5.jinja"
    samples = MINICPM.samples(
        templates=("openbmb-MiniCPM5-1B.jinja",),
        call_tokens=64,
        outputs=(
            SampleOutput('I will check.\n<function name="get_weather"><param name="city">Paris</param></function>',
                         "I will check.\n", (("get_weather", {"city": "Paris"}),)),
            SampleOutput('<function name="f"><param name="a"><![CDATA[x < y</param>]]></param>'
                         '<param name="b">2</param><param name="c">True</param></function>\n'
                         '<function name="g"></function>', "",
                         (("f", {"a": "x < y</param>", "b": 2, "c": True}), ("g", {}))),
            SampleOutput('A <function name="<b>"> tag is not a call', 'A <function name="<b>"> tag is not a call'),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return '<function name="' in template_source and '<param name="' in template_source


__all__ = ["XmlCallsParser", "XmlCallsStyle", "XmlFormat"]
