"""Kimi K2: ``<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{…}…``.

Kimi-K2-Instruct, -Thinking and moonshotai's K2 template.

A turn's calls form one section; each call's header is its id, which names the
tool and numbers the call::

    <|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>
    {"city": "Paris"}<|tool_call_end|><|tool_calls_section_end|>

(on one line, calls chained directly). The id is the model's: the parser gives
it to the client as the call's id (a fresh one when the model repeats an id of
the same answer). In the history the templates number the calls themselves,
Kimi-K2-Instruct and -Thinking over the whole conversation, moonshotai's over
each turn, and moonshotai's writes a result's ``tool_call_id`` as given: the
history's calls and results get the ids the template writes
(:meth:`KimiK2Style.adjust_history`), whatever ids the client used.
``<|tool_calls_section_begin|>`` is the lazy grammar's trigger word.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from oaiproxy.conversation.model import ToolSpec
from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.base import OutputParser
from oaiproxy.dialects.gbnf import lit
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import Call, SampleOutput, Samples
from oaiproxy.dialects.token_sections import SectionFormat, SectionParser, section_grammar
from oaiproxy.grammar import GrammarBuilder

SECTION_BEGIN = "<|tool_calls_section_begin|>"
SECTION_END = "<|tool_calls_section_end|>"
CALL_BEGIN = "<|tool_call_begin|>"
ARGUMENT_BEGIN = "<|tool_call_argument_begin|>"
CALL_END = "<|tool_call_end|>"

K2 = SectionFormat(SECTION_BEGIN, CALL_BEGIN, ARGUMENT_BEGIN, CALL_END, SECTION_END)

_ID = re.compile(r"functions\.([^<>\n:]{1,128}):([0-9]{1,6})\Z")


def kimi_id(name: str, index: int) -> str:
    """The id a Kimi template writes for call ``index`` of tool ``name``."""
    return f"functions.{name}:{index}"


def _read_header(header: str) -> tuple[str, str | None] | None:
    found = _ID.match(header.strip())
    return (found.group(1), found.group(0)) if found else None


def _calls(calls: Sequence[Call]) -> str:
    return K2.section_text([(kimi_id(n, k), a) for k, (n, a) in enumerate(calls)])


@register(detect_priority=78)
class KimiK2Style(DialectStyle):
    name = "kimi-k2"
    rule_prefix = "kimi"
    fallback_prompt = "tools-kimi-k2.jinja"
    special_tokens = K2.tokens
    samples = Samples(
        templates=("Kimi-K2-Instruct.jinja", "Kimi-K2-Thinking.jinja", "moonshotai-Kimi-K2.jinja"),
        calls=_calls,
        history_call=lambda n, a: f"{CALL_BEGIN}{kimi_id(n, 0)}{ARGUMENT_BEGIN}{a}{CALL_END}",
        fallback_call=lambda n, a: _calls([(n, a)]),
        call_tokens=96,  # the special tokens are many tokens of a model without them
        outputs=(
            SampleOutput(f'I will check.{SECTION_BEGIN}{CALL_BEGIN}functions.get_weather:0{ARGUMENT_BEGIN}'
                         f'{{"city": "Paris"}}{CALL_END}{SECTION_END}', "I will check.",
                         (("get_weather", {"city": "Paris"}),)),
            SampleOutput(f'{SECTION_BEGIN}{CALL_BEGIN}functions.f:3{ARGUMENT_BEGIN}{{"a": "x\\"y"}}{CALL_END}'
                         f'{CALL_BEGIN}functions.g:4{ARGUMENT_BEGIN}{{}}{CALL_END}{SECTION_END}', "",
                         (("f", {"a": 'x"y'}), ("g", {}))),
            SampleOutput(f"{SECTION_BEGIN} is followed by no call at all",
                         f"{SECTION_BEGIN} is followed by no call at all"),
            SampleOutput(f"{SECTION_BEGIN}{CALL_BEGIN}get_weather{ARGUMENT_BEGIN}{{}}",  # not an id
                         f"{SECTION_BEGIN}{CALL_BEGIN}get_weather{ARGUMENT_BEGIN}{{}}"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return SECTION_BEGIN in template_source and ARGUMENT_BEGIN in template_source

    def _header_rule(self, i: int, spec: ToolSpec) -> str:
        return f"{lit(f'functions.{spec.name}:')} [0-9]{{1,4}}"

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """One section of up to ``max_calls`` calls, each ``functions.NAME:IDX`` and its JSON arguments."""
        return section_grammar(builder, tools, K2, self.rule_prefix, self._header_rule)

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": SECTION_BEGIN}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return SectionParser(K2, _read_header, enabled=tools.mode != "none")

    @property
    def _numbers_whole_conversation(self) -> bool:
        """Whether the template numbers calls over the whole conversation (else over each turn)."""
        return "tool_call_counter" in self.template.source

    def adjust_history(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each past call gets the id the template writes for it, and each result the id of its call."""
        out: list[dict[str, Any]] = []
        ids: dict[str, str] = {}
        counter = 0
        for m in messages:
            calls = m.get("tool_calls")
            if m.get("role") == "assistant" and calls:
                renamed = []
                for k, call in enumerate(calls):
                    own = kimi_id((call.get("function") or {}).get("name", ""),
                                  counter if self._numbers_whole_conversation else k)
                    counter += 1
                    if call.get("id"):
                        ids[call["id"]] = own
                    renamed.append({**call, "id": own})
                m = {**m, "tool_calls": renamed}
            elif m.get("role") == "tool" and m.get("tool_call_id") in ids:
                m = {**m, "tool_call_id": ids[m["tool_call_id"]]}
            out.append(m)
        return out

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        found = _ID.match(call_id or "")
        return K2.section_text([(call_id if found else kimi_id(name, 0), arguments)])


__all__ = ["K2", "KimiK2Style", "kimi_id"]
