"""DeepSeek R1 / V3.1: ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>…<｜tool▁sep｜>…<｜tool▁call▁end｜>…``.

Both write a turn's calls in one section, each call between
``<｜tool▁call▁begin｜>`` and ``<｜tool▁call▁end｜>``; they differ inside:

* R1 (and its distills) writes the call's type, then the name, then the
  arguments in a fenced JSON block, calls separated by a newline::

      <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
      ```json
      {"city": "Paris"}
      ```<｜tool▁call▁end｜><｜tool▁calls▁end｜>

* V3.1 writes the name, then the arguments, calls chained directly::

      <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜>
      <｜tool▁calls▁end｜>

  (on one line).

Calls carry no id. ``<｜tool▁calls▁begin｜>`` is the lazy grammar's trigger
word.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from oaiproxy.conversation.model import ToolSpec
from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.base import OutputParser
from oaiproxy.dialects.gbnf import lit
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import Call, SampleOutput, Samples
from oaiproxy.dialects.token_sections import SectionFormat, SectionParser, section_grammar
from oaiproxy.grammar import GrammarBuilder

CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"
#: R1's call type, written before the separator
FUNCTION = "function"

R1 = SectionFormat(CALLS_BEGIN, CALL_BEGIN, "\n```json\n", "\n```" + CALL_END, CALLS_END, separator="\n")
V31 = SectionFormat(CALLS_BEGIN, CALL_BEGIN, SEP, CALL_END, CALLS_END)

#: the format's special tokens (R1's fence around the arguments is plain text)
TOKENS = (CALLS_BEGIN, CALL_BEGIN, SEP, CALL_END, CALLS_END)

_NAME = re.compile(r"[^<>\n｜]{1,128}\Z")


def _r1_header(header: str) -> tuple[str, str | None] | None:
    name = header.removeprefix(FUNCTION + SEP)
    return (name, None) if name != header and _NAME.match(name) else None


def _v31_header(header: str) -> tuple[str, str | None] | None:
    return (header, None) if _NAME.match(header) else None


def _r1_calls(calls: Sequence[Call]) -> str:
    return R1.section_text([(FUNCTION + SEP + n, a) for n, a in calls])


def _v31_calls(calls: Sequence[Call]) -> str:
    return V31.section_text([(n, a) for n, a in calls])


class _DeepSeekStyle(DialectStyle):
    """What both DeepSeek forms share; each subclass names its :class:`SectionFormat`."""

    fmt: SectionFormat = V31

    @classmethod
    def _speaks(cls, template_source: str) -> bool:
        return CALLS_BEGIN in template_source and SEP in template_source

    def _header_rule(self, i: int, spec: ToolSpec) -> str:
        raise NotImplementedError

    def _read_header(self, header: str) -> tuple[str, str | None] | None:
        raise NotImplementedError

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """One ``<｜tool▁calls▁begin｜>`` section of up to ``max_calls`` calls, one alternative per tool."""
        return section_grammar(builder, tools, self.fmt, self.rule_prefix, self._header_rule)

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": CALLS_BEGIN}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return SectionParser(self.fmt, self._read_header, enabled=tools.mode != "none")



@register(detect_priority=76)
class DeepSeekR1Style(_DeepSeekStyle):
    name = "deepseek-r1"
    rule_prefix = "dsr1"
    fallback_prompt = "tools-deepseek-r1.jinja"
    fmt = R1
    special_tokens = TOKENS
    samples = Samples(
        templates=("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "llama-cpp-deepseek-r1.jinja"),
        calls=_r1_calls,
        history_call=lambda n, a: f"{CALL_BEGIN}{FUNCTION}{SEP}{n}\n```json\n{a}\n```{CALL_END}",
        fallback_call=lambda n, a: _r1_calls([(n, a)]),
        call_tokens=128,  # each of the fullwidth special tokens is many tokens of a model without them
        also_detected=("deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",),
        outputs=(
            SampleOutput(f'I will check.{CALLS_BEGIN}{CALL_BEGIN}function{SEP}get_weather\n```json\n'
                         f'{{"city": "Paris"}}\n```{CALL_END}{CALLS_END}', "I will check.",
                         (("get_weather", {"city": "Paris"}),)),
            SampleOutput(f'{CALLS_BEGIN}{CALL_BEGIN}function{SEP}f\n```json\n{{"a": "x\\"y"}}\n```{CALL_END}\n'
                         f'{CALL_BEGIN}function{SEP}g\n```json\n{{}}\n```{CALL_END}{CALLS_END}', "",
                         (("f", {"a": 'x"y'}), ("g", {}))),
            SampleOutput(f"{CALLS_BEGIN} is followed by no call at all",
                         f"{CALLS_BEGIN} is followed by no call at all"),
            SampleOutput(f"{CALLS_BEGIN}{CALL_BEGIN}get_weather{SEP}{{}}",  # V3.1's form is not R1's
                         f"{CALLS_BEGIN}{CALL_BEGIN}get_weather{SEP}{{}}"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return cls._speaks(template_source) and "```json" in template_source

    def _header_rule(self, i: int, spec: ToolSpec) -> str:
        return lit(FUNCTION + SEP + spec.name)

    def _read_header(self, header: str) -> tuple[str, str | None] | None:
        return _r1_header(header)

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return _r1_calls([(name, arguments)])


@register(detect_priority=75)
class DeepSeekV31Style(_DeepSeekStyle):
    name = "deepseek-v3.1"
    rule_prefix = "dsv31"
    fallback_prompt = "tools-deepseek-v3.1.jinja"
    fmt = V31
    special_tokens = TOKENS
    samples = Samples(
        templates=("deepseek-ai-DeepSeek-V3.1.jinja",),
        calls=_v31_calls,
        history_call=lambda n, a: f"{CALL_BEGIN}{n}{SEP}{a}{CALL_END}",
        fallback_call=lambda n, a: _v31_calls([(n, a)]),
        call_tokens=128,  # each of the fullwidth special tokens is many tokens of a model without them
        outputs=(
            SampleOutput(f'I will check.{CALLS_BEGIN}{CALL_BEGIN}get_weather{SEP}{{"city": "Paris"}}{CALL_END}'
                         f'{CALLS_END}', "I will check.", (("get_weather", {"city": "Paris"}),)),
            SampleOutput(f'{CALLS_BEGIN}{CALL_BEGIN}f{SEP}{{"a": [1, {{"b": null}}]}}{CALL_END}{CALL_BEGIN}g{SEP}{{}}'
                         f'{CALL_END}{CALLS_END} Done.', " Done.", (("f", {"a": [1, {"b": None}]}), ("g", {}))),
            SampleOutput(f"{CALLS_BEGIN} is followed by no call at all",
                         f"{CALLS_BEGIN} is followed by no call at all"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return cls._speaks(template_source) and "```json" not in template_source

    def _header_rule(self, i: int, spec: ToolSpec) -> str:
        return lit(spec.name)

    def _read_header(self, header: str) -> tuple[str, str | None] | None:
        return _v31_header(header)

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return _v31_calls([(name, arguments)])


__all__ = ["DeepSeekR1Style", "DeepSeekV31Style", "R1", "V31"]
