"""MeetKai Functionary v3.1 (Llama 3.1 based) and v3.2 (``>>>recipient`` lines).

v3.1 writes ``<function=NAME>{…}</function>`` and raw code after
``<|python_tag|>``, like Llama 3.1's own tag form, so it reuses that parser
without the bare JSON form. v3.2 routes every message part with a recipient
line: the prompt ends with ``>>>``, the model writes ``all\\n`` and text, or a
tool name, a newline and the JSON arguments; more parts follow ``>>>``.
"""

from __future__ import annotations

from typing import Any

from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.base import OutputParser
from oaiproxy.dialects.gbnf import add_tool_args, alternatives, lit
from oaiproxy.dialects.llama3 import FUNCTION_OPEN, Llama3Style
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import SampleOutput, Samples
from oaiproxy.dialects.streaming import JsonCallSection
from oaiproxy.grammar import GrammarBuilder

RECIPIENT = ">>>"
TEXT_RECIPIENT = "all"


@register(detect_priority=30)
class FunctionaryV31Style(Llama3Style):
    """Functionary v3.1: ``<function=NAME>{…}</function>``, code after ``<|python_tag|>``."""

    name = "functionary-v3.1"
    fallback_prompt = "tools-functionary-v3.1.jinja"
    json_form = False
    call_builtins = ()
    samples = Samples(
        templates=("meetkai-functionary-medium-v3.1.jinja",),
        calls=lambda calls: "".join(f"{FUNCTION_OPEN}{n}>{a}</function>" for n, a in calls),
        history_call=lambda n, a: f"{FUNCTION_OPEN}{n}>{a}</function>",
        fallback_call=lambda n, a: f"{FUNCTION_OPEN}{n}>{a}</function>",
        outputs=(
            SampleOutput('Checking.<function=get_weather>{"city": "Paris"}</function>', "Checking.",
                         (("get_weather", {"city": "Paris"}),)),
            SampleOutput('{"name": "f", "parameters": {}}', '{"name": "f", "parameters": {}}'),  # no bare JSON form
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return "<|start_header_id|>" in template_source and FUNCTION_OPEN in template_source

    def render_extra(self, tools: ToolPlan) -> dict[str, Any]:
        return {}

    def adjust_history(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return messages  # Functionary renders several calls per turn itself


class FunctionaryV32Parser(JsonCallSection):
    """Recipient lines: ``all`` opens text, a tool name opens its JSON arguments."""

    triggers = (RECIPIENT,)

    def __init__(self, tool_names: list[str]) -> None:
        super().__init__(enabled=True)
        self._names = set(tool_names)
        self._headers = [TEXT_RECIPIENT + "\n"] + [n + "\n" for n in tool_names]
        self._mode = "start"

    def _enter(self, trigger: str) -> None:
        self._hold(trigger)
        self._mode = "header"

    def _section(self) -> None:
        if self._mode == "start":
            # the prompt ends with ">>>"; a prompt from another template may not, so one is allowed here
            if self._buf.startswith(RECIPIENT):
                self._buf = self._buf[len(RECIPIENT):]
                self._hold(RECIPIENT)
            elif RECIPIENT.startswith(self._buf):
                return
            self._mode = "header"
        if self._mode == "header":
            self._header()
        elif self._mode == "args":
            if self._stream_arguments():
                self._open_call = None
                self._mode = "after"

    def _header(self) -> None:
        buf = self._buf
        for header in self._headers:
            if buf.startswith(header):
                self._buf = buf[len(header):]
                name = header[:-1]
                if name == TEXT_RECIPIENT:
                    self._mode = "content"
                else:
                    self._begin_arguments(self.start_call(name))
                    self._mode = "args"
                return
        if any(h.startswith(buf) for h in self._headers):
            return  # undecided
        self._replay()  # no recipient line: plain text
        self._mode = "content"

    def _end_section(self) -> None:
        if self._mode in ("start", "header"):
            if not (TEXT_RECIPIENT + "\n").startswith(self._buf) or not self._buf:
                self._replay(with_pending=True)
        elif self._mode == "args":
            self.truncated = True
        self._buf = ""


@register(detect_priority=40)
class FunctionaryV32Style(DialectStyle):
    """Functionary v3.2: ``>>>NAME\\n{…}`` parts, ``>>>all\\n`` for text."""

    name = "functionary-v3.2"
    rule_prefix = "functionary"
    fallback_prompt = "tools-functionary-v3.2.jinja"
    stop_words = ("<|eot_id|>", "<|eom_id|>")
    special_tokens = ("<|eot_id|>", "<|eom_id|>")
    answer_prefix = TEXT_RECIPIENT + "\n"
    samples = Samples(
        templates=("meetkai-functionary-medium-v3.2.jinja",),
        calls=lambda calls: RECIPIENT.join(f"{n}\n{a}" for n, a in calls),
        auto_calls=lambda calls: "".join(f"{RECIPIENT}{n}\n{a}" for n, a in calls),
        history_call=lambda n, a: f"{RECIPIENT}{n}\n{a}",
        fallback_call=lambda n, a: f"{RECIPIENT}{n}\n{a}",
        outputs=(
            SampleOutput('all\nChecking.>>>get_weather\n{"city": "Paris"}>>>f\n{}', "Checking.",
                         (("get_weather", {"city": "Paris"}), ("f", {}))),
            SampleOutput("all\na >>> b", "a >>> b"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return ">>>all" in template_source or ">>>${recipient}" in template_source

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """Recipient parts: ``NAME\\n{…}``, more after ``>>>``.

        The prompt ends with ``>>>``, so the first part's is optional (a prompt from
        another template under ``--style`` may not end with it)::

            get_weather
            {"city": "Paris"}>>>get_time
            {"zone": "CET"}
        """
        args = add_tool_args(builder, tools, "functionary")
        call = alternatives(builder, "functionary-call", [
            builder.add_rule(f"functionary-tool{i}-call", f"{lit(spec.name + chr(10))} {args[spec.name]}")
            for i, spec in tools.indexed])
        first = builder.add_rule("functionary-first", f"{lit(RECIPIENT)}? {call}")
        more = tools.max_calls - 1
        if not more:
            return builder.add_rule("functionary-calls", first)
        following = builder.add_rule("functionary-next", f"{lit(RECIPIENT)} {call}")
        return builder.add_rule("functionary-calls", f"{first} {following}{{0,{more}}}")

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        names = "|".join(_regex_escape(n) for n in tools.names)
        triggers = [{"type": "pattern", "value": f"^(?:{RECIPIENT})?(?:{names})\\n"}]
        triggers += [{"type": "word", "value": f"{RECIPIENT}{n}\n"} for n in tools.names]
        return triggers

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return FunctionaryV32Parser(tools.names if tools.mode != "none" else [])

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return f"{RECIPIENT}{name}\n{arguments}"


def _regex_escape(text: str) -> str:
    """Escape for ECMAScript regexes (llama-server's std::regex)."""
    return "".join("\\" + c if c in r"\^$.|?*+()[]{}/-" else c for c in text)


__all__ = ["FunctionaryV31Style", "FunctionaryV32Style", "FunctionaryV32Parser"]
