"""Qwen3-Coder / Qwen3.5 / Nemotron 3 / Step 3.5: ``<tool_call>`` with ``<function=NAME>`` and XML parameters.

The format Qwen3-Coder introduced: each call is a ``<tool_call>`` block holding
``<function=NAME>`` and one ``<parameter=KEY>`` element per argument, the value
on lines of its own::

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    </function>
    </tool_call>

The templates write a string argument raw and any other value as JSON
(``tojson`` for objects and arrays, ``| string`` for numbers; the grammar
writes a boolean as JSON ``true``, where Python's jinja would render ``True``). The grammar
follows that: a plain ``{"type": "string"}`` parameter is raw text that cannot
contain ``\\n</parameter>``; a string with ``minLength``/``maxLength`` is raw text
without ``<`` (so its length can be counted); a string ``enum``/``const`` is its
literal values; a string with a ``pattern`` or ``format`` is refused (raw text
cannot be held to it exactly); every other schema is a JSON value through the
schema converter (the value grammar is :mod:`oaiproxy.dialects.xml_values`,
shared with the other XML-argument formats). Parameters come in the order the schema declares them, the
required ones always, the optional ones or not (the templates write them in the
arguments' order, which for a valid call from this grammar is the same).
Undeclared parameters are never generated, even where the tool's enforced
schema would admit them. ``<tool_call>`` is the lazy grammar's trigger word;
several calls follow each other, separated by at most one newline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from oaiproxy.conversation.model import ToolSpec
from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.base import OutputParser
from oaiproxy.dialects.gbnf import alternatives, lit, repeat_rule
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import Call, SampleOutput, Samples
from oaiproxy.dialects.streaming import JsonCallSection
from oaiproxy.dialects.xml_values import (
    json_value_text,
    object_parameters,
    raw_string_keys,
    render_value,
    value_rule,
)
from oaiproxy.grammar import GrammarBuilder

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
FUNCTION_OPEN = "<function="
FUNCTION_CLOSE = "</function>"
PARAM_OPEN = "<parameter="
#: what ends a parameter's value: the value is everything before its first occurrence
PARAM_END = "\n</parameter>"

_NAME = re.compile(r"[^<>\n]{1,128}\Z")
def call_text(name: str, arguments: str) -> str:
    """One whole ``<tool_call>`` block for ``name`` and its arguments (JSON text), as the templates render it."""
    try:
        args = json.loads(arguments)
    except ValueError:
        args = {}
    params = "".join(f"{PARAM_OPEN}{k}>\n{render_value(v)}{PARAM_END}\n"
                     for k, v in (args.items() if isinstance(args, dict) else ()))
    return f"{OPEN}\n{FUNCTION_OPEN}{name}>\n{params}{FUNCTION_CLOSE}\n{CLOSE}"


def _calls_text(calls: Sequence[Call]) -> str:
    return "\n".join(call_text(n, a) for n, a in calls)


class Qwen3CoderParser(JsonCallSection):
    """Content, then ``<tool_call>`` blocks of ``<function=…>`` and ``<parameter=…>`` elements.

    A call is announced when its name is complete; its arguments (a JSON object
    built from the parameters) are sent when ``</function>`` closes it. A
    parameter the tool declares as a string is read raw; any other value is read
    as JSON, or as a string when it is not JSON (a parameter the grammar did not
    write).
    """

    triggers = (OPEN,)

    def __init__(self, enabled: bool, raw_params: Mapping[str, frozenset[str]]) -> None:
        super().__init__(enabled)
        self._raw_params = raw_params
        self._params: list[tuple[str, str]] = []
        self._param = ""

    def _enter(self, trigger: str) -> None:
        self._pending = trigger
        self._mode = "fopen"

    def _section(self) -> None:
        mode = self._mode
        if mode == "fopen":
            self._fopen()
        elif mode == "fname":
            self._fname()
        elif mode == "params":
            self._params_step()
        elif mode == "pname":
            self._pname()
        elif mode == "pnl":
            self._pnl()
        elif mode == "pvalue":
            self._pvalue()
        elif mode == "close":
            if self._expect(CLOSE) is not False:  # a missing closing tag does not undo a whole call
                self._mode = "after"

    def _fopen(self) -> None:
        before = self._buf
        done = self._expect(FUNCTION_OPEN)
        if done is None:
            self._not_a_call()
        elif done:
            self._pending += before[: len(before) - len(self._buf)]
            self._mode = "fname"

    def _fname(self) -> None:
        end = self._buf.find(">")
        if end < 0:
            if len(self._buf) > 128 or "<" in self._buf or "\n" in self._buf:
                self._not_a_call()  # the text stays, read as content (it may hold a trigger)
            return
        name = self._buf[:end]
        if not _NAME.match(name):
            self._not_a_call()
            return
        self._buf = self._buf[end + 1:]
        self._pending = ""
        self._call = self.start_call(name)
        self._params = []
        self._mode = "params"

    def _params_step(self) -> None:
        stripped = self._buf.lstrip()
        for literal, mode in ((PARAM_OPEN, "pname"), (FUNCTION_CLOSE, "close")):
            if stripped.startswith(literal):
                self._buf = stripped[len(literal):]
                if mode == "close":
                    self._close_function()
                self._mode = mode
                return
        if stripped and not PARAM_OPEN.startswith(stripped) and not FUNCTION_CLOSE.startswith(stripped):
            self._broken()

    def _arguments_so_far(self) -> str:
        """The parameters read so far as the text of a JSON object, still open."""
        call = self._call
        assert call is not None
        raw = self._raw_params.get(call.name, frozenset())
        return "{" + ", ".join(f"{json.dumps(key, ensure_ascii=False)}: {json_value_text(value, key in raw)}"
                               for key, value in self._params)

    def _close_function(self) -> None:
        assert self._call is not None
        self.add_arguments(self._call, self._arguments_so_far() + "}")
        self._call = None

    def _pname(self) -> None:
        end = self._buf.find(">")
        if end < 0:
            if len(self._buf) > 128 or "<" in self._buf or "\n" in self._buf:
                self._broken()
            return
        name = self._buf[:end]
        if not _NAME.match(name):
            self._broken()
            return
        self._param = name
        self._buf = self._buf[end + 1:]
        self._mode = "pnl"

    def _pnl(self) -> None:
        if self._buf.startswith("\n"):  # the newline the template writes before the value
            self._buf = self._buf[1:]
        self._mode = "pvalue"

    def _pvalue(self) -> None:
        end = self._buf.find(PARAM_END)
        if end < 0:
            return
        self._params.append((self._param, self._buf[:end]))
        self._buf = self._buf[end + len(PARAM_END):]
        self._mode = "params"

    def _end_section(self) -> None:
        mode = self._mode
        if mode == "fopen":
            self.emit_content(self._pending + self._buf)
        elif mode == "fname":
            self.truncated = bool(self._buf.strip())
            self.emit_content(self._pending + self._buf)
        elif mode in ("params", "pname", "pnl", "pvalue"):
            self.truncated = True  # the call keeps the parameters it completed, in an object never closed
            assert self._call is not None
            self.add_arguments(self._call, self._arguments_so_far())
        elif mode == "close" and self._expect(CLOSE) is None:
            self.emit_content(self._buf)
        self._buf = ""


@register(detect_priority=15)
class Qwen3CoderStyle(DialectStyle):
    name = "qwen3-coder"
    rule_prefix = "qwen3c"
    fallback_prompt = "tools-qwen3-coder.jinja"
    special_tokens = (OPEN, CLOSE)
    samples = Samples(
        templates=("Qwen3-Coder.jinja", "Qwen3.5-4B.jinja", "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja",
                   "StepFun3.5-Flash.jinja"),
        calls=_calls_text,
        history_call=lambda n, a: call_text(n, a).split("\n", 1)[1].rsplit(f"\n{CLOSE}", 1)[0],
        fallback_call=call_text,
        call_tokens=64,
        argument_key=lambda key: f"{PARAM_OPEN}{key}>",
        outputs=(
            SampleOutput("I will check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n"
                         "</parameter>\n</function>\n</tool_call>", "I will check.\n",
                         (("get_weather", {"city": "Paris"}),)),
            SampleOutput("<tool_call>\n<function=f>\n<parameter=a>\nx < y\n</parameter>\n<parameter=b>\n2\n"
                         "</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=g>\n</function>\n"
                         "</tool_call>", "", (("f", {"a": "x < y", "b": 2}), ("g", {}))),
            SampleOutput("<tool_call> is followed by no function at all",
                         "<tool_call> is followed by no function at all"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return all(marker in template_source for marker in (OPEN, FUNCTION_OPEN, PARAM_OPEN))

    # -- grammar ----------------------------------------------------------------------------

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """``<tool_call>`` blocks, one alternative per tool, up to ``max_calls`` of them."""
        body = alternatives(builder, "qwen3c-call-body", [
            self._tool_rule(builder, i, spec) for i, spec in tools.indexed])
        call = builder.add_rule("qwen3c-call", f"{lit(OPEN + chr(10))} {body} {lit(FUNCTION_CLOSE + chr(10) + CLOSE)}")
        sep = builder.add_rule("qwen3c-sep", '"\\n"?')
        return builder.add_rule("qwen3c-calls", repeat_rule(call, sep, tools.max_calls))

    def _tool_rule(self, builder: GrammarBuilder, i: int, spec: ToolSpec) -> str:
        props, required = object_parameters(spec, i, self.name)
        parts = [lit(f"{FUNCTION_OPEN}{spec.name}>\n")]
        for j, (key, prop) in enumerate(props.items()):
            value = value_rule(builder, prop, f"qwen3c-tool{i}-p{j}", spec, i, key, end=PARAM_END,
                               dialect=self.name, text_prefix="qwen3c")
            param = builder.add_rule(f"qwen3c-tool{i}-param{j}",
                                     f"{lit(f'{PARAM_OPEN}{key}>{chr(10)}')} {value} {lit(PARAM_END + chr(10))}")
            parts.append(param if key in required else f"{param}?")
        return builder.add_rule(f"qwen3c-tool{i}-call", " ".join(parts))

    # -- the rest of the dialect --------------------------------------------------------------

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": OPEN}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        raw = {spec.name: raw_string_keys(spec) for _, spec in tools.indexed}
        return Qwen3CoderParser(enabled=tools.mode != "none", raw_params=raw)

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return call_text(name, arguments)


__all__ = ["Qwen3CoderParser", "Qwen3CoderStyle", "call_text"]
