"""Apertus: ``<|tools_prefix|>[{"NAME": {…arguments…}}, …]<|tools_suffix|>``.

All calls of a turn form one JSON array between the two special tokens; each
call is an object with a single key, the function's name, whose value is the
arguments. The template writes no call ids (tool results follow in call
order), so the proxy gives its own. A call is announced when its name key is
complete and its arguments stream as written.
"""

from __future__ import annotations

import json

from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects._jsonscan import Path
from oaiproxy.dialects.base import OutputParser
from oaiproxy.dialects.gbnf import SHORT_WS, add_tool_args, alternatives, lit
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import SampleOutput, Samples
from oaiproxy.dialects.streaming import CallHandle, JsonCallSection
from oaiproxy.grammar import GrammarBuilder

OPEN = "<|tools_prefix|>"
CLOSE = "<|tools_suffix|>"


def call_text(name: str, arguments: str) -> str:
    """One call as the template writes it: ``{"NAME": ARGS}``."""
    return f"{{{json.dumps(name)}: {arguments}}}"


class ApertusParser(JsonCallSection):
    """Content, then ``<|tools_prefix|>`` and one JSON array of ``{NAME: ARGS}`` objects."""

    triggers = (OPEN,)

    def _enter(self, trigger: str) -> None:
        self._mode = "calls"
        self._begin_json(trigger)
        #: the array index of the call being written, and the call
        self._current: tuple[int, CallHandle] | None = None

    def _on_char(self, ch: str, path: Path | None, completed: list[Path]) -> None:
        if path is None or len(path) < 2 or not isinstance(path[0], int):
            return
        index, name = path[0], path[1]
        if self._current is None or self._current[0] != index:
            if not isinstance(name, str):  # pragma: no cover - an array element's key is a string
                return
            call = self.start_call(name)
            self._current = (index, call)
            self._open_call = call  # broken JSON from here on is a cut call, not content
        call = self._current[1]
        if path[1] == call.name:  # a second key in the same object is not an argument
            self.add_arguments(call, ch)

    def _section(self) -> None:
        if self._mode == "calls":
            if self._scan_json(self._on_char):
                self._mode = "close"
        elif self._mode == "close" and self._expect(CLOSE) is not False:
            self._mode = "after"

    def _end_section(self) -> None:
        if self._mode == "calls":
            if not self._json_begun:
                self._replay(with_pending=True)
            else:
                self.truncated = True
        elif self._mode == "close" and self._expect(CLOSE) is None:
            self.emit_content(self._buf)
        self._buf = ""


@register(detect_priority=89)
class ApertusStyle(DialectStyle):
    name = "apertus"
    rule_prefix = "apertus"
    fallback_prompt = "tools-apertus.jinja"
    special_tokens = (OPEN, CLOSE)
    samples = Samples(
        templates=("Apertus-8B-Instruct.jinja",),
        calls=lambda calls: OPEN + "[" + ", ".join(call_text(n, a) for n, a in calls) + "]" + CLOSE,
        history_call=lambda n, a: OPEN + "[" + call_text(n, a),
        fallback_call=lambda n, a: OPEN + "[" + call_text(n, a),
        outputs=(
            SampleOutput('Checking.<|tools_prefix|>[{"f": {"a": [1, {"b": "}"}]}}, {"g": {}}]<|tools_suffix|>',
                         "Checking.", (("f", {"a": [1, {"b": "}"}]}), ("g", {}))),
            SampleOutput("<|tools_prefix|> and no list", "<|tools_prefix|> and no list"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return OPEN in template_source and CLOSE in template_source

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """``<|tools_prefix|>[`` up to ``max_calls`` ``{"NAME": ARGS}`` objects ``]<|tools_suffix|>``."""
        ws = builder.add_rule("apertus-ws", SHORT_WS)
        args = add_tool_args(builder, tools, "apertus")
        call = alternatives(builder, "apertus-call", [
            builder.add_rule(f"apertus-tool{i}-call",
                             f'"{{" {ws} {lit(json.dumps(spec.name))} {ws} ":" {ws} {args[spec.name]} {ws} "}}"')
            for i, spec in tools.indexed])
        more = tools.max_calls - 1
        rest = f' ( "," {ws} {call} ){{0,{more}}}' if more else ""
        return builder.add_rule("apertus-calls", f'{lit(OPEN + "[")} {ws} {call}{rest} {ws} {lit("]" + CLOSE)}')

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": OPEN}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return ApertusParser(enabled=tools.mode != "none")

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return f"{OPEN}[{call_text(name, arguments)}]{CLOSE}"
