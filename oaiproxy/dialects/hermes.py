"""Hermes 2 Pro / Hermes 3 / Qwen 2.5 / Qwen 3: ``<tool_call>{"name": …, "arguments": …}</tool_call>``.

The format Nous Research introduced and Qwen adopted: each call is a JSON
object wrapped in ``<tool_call>`` tags, several calls follow each other, and
free text may precede them. ``<tool_call>`` is the lazy grammar's trigger word.
"""

from __future__ import annotations

import json

from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.base import OutputParser
from oaiproxy.dialects.gbnf import SHORT_WS, add_tool_args, alternatives, json_call_body, lit, repeat_rule
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import SampleOutput, Samples, json_call
from oaiproxy.dialects.streaming import CallObjectReader, JsonCallSection
from oaiproxy.grammar import GrammarBuilder

OPEN = "<tool_call>"
CLOSE = "</tool_call>"


class HermesParser(JsonCallSection):
    """Content, then ``<tool_call>`` JSON ``</tool_call>`` blocks; arguments stream as written."""

    triggers = (OPEN,)

    def _enter(self, trigger: str) -> None:
        self._mode = "call"
        self._begin_json(trigger, CallObjectReader(self, ()))

    def _section(self) -> None:
        if self._mode == "call":
            if self._scan_with_reader():
                self._mode = "close"
        elif self._mode == "close":
            if self._expect(CLOSE) is not False:  # a missing closing tag does not undo a whole call
                self._mode = "after"

    def _end_section(self) -> None:
        if self._mode == "call":
            self._abort_json()
        elif self._mode == "close" and self._expect(CLOSE) is None:
            self.emit_content(self._buf)
        self._buf = ""


@register(detect_priority=10)
class HermesStyle(DialectStyle):
    name = "hermes"
    rule_prefix = "hermes"
    fallback_prompt = "tools-hermes.jinja"
    special_tokens = (OPEN, CLOSE)
    samples = Samples(
        templates=("Qwen-Qwen2.5-7B-Instruct.jinja", "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
                   "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", "Qwen-Qwen3-0.6B.jinja"),
        calls=lambda calls: "\n".join(f"{OPEN}\n{json_call(n, a)}\n{CLOSE}" for n, a in calls),
        fallback_call=lambda n, a: f"{OPEN}\n{json_call(n, a)}\n{CLOSE}",
        also_detected=("Bielik-11B-v3.0-Instruct.jinja", "MiMo-VL.jinja", "Qwen-QwQ-32B.jinja", "Reka-Edge.jinja",
                       "ibm-granite-granite-4.0.jinja", "ibm-granite-granite-4.1.jinja"),
        outputs=(
            SampleOutput('I will check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
                         '</tool_call>', "I will check.\n", (("get_weather", {"city": "Paris"}),)),
            SampleOutput('<tool_call>{"arguments": {"a": "x\\"y"}, "name": "f"}</tool_call><tool_call>{"name": "g"}'
                         '</tool_call>', "", (("f", {"a": 'x"y'}), ("g", {}))),
            SampleOutput("<tool_call> is followed by no JSON at all", "<tool_call> is followed by no JSON at all"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        # Qwen3-Coder, GLM and MiniMax also say <tool_call> but put XML, not JSON, inside it.
        return OPEN in template_source and not any(
            marker in template_source
            for marker in ("<parameter=", "<arg_key>", "<invoke ", "<function=", "<tool_calls>")
        )

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """``<tool_call>`` JSON ``</tool_call>``, one alternative per tool, up to ``max_calls`` of them."""
        ws = builder.add_rule("hermes-ws", SHORT_WS)
        args = add_tool_args(builder, tools, "hermes")
        body = alternatives(builder, "hermes-call-body", [
            builder.add_rule(f"hermes-tool{i}-call", json_call_body(spec.name, args[spec.name], ws))
            for i, spec in tools.indexed])
        call = builder.add_rule("hermes-call", f"{lit(OPEN)} {ws} {body} {ws} {lit(CLOSE)}")
        sep = builder.add_rule("hermes-sep", SHORT_WS)
        return builder.add_rule("hermes-calls", repeat_rule(call, sep, tools.max_calls))

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": OPEN}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return HermesParser(enabled=tools.mode != "none")

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return f'{OPEN}\n{{"name": {json.dumps(name)}, "arguments": {arguments}}}\n{CLOSE}'
