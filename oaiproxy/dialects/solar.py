"""Solar Open: ``<|tool_calls|><|tool_call:begin|>ID<|tool_call:name|>NAME<|tool_call:args|>{…}<|tool_call:end|>…``.

Upstage's Solar Open 100B: each call carries a 10-character id the model writes.

An assistant turn is either an answer (``<|content|>…<|end|>``) or a section of
calls, chained directly and closed by ``<|calls|>``::

    <|tool_calls|><|tool_call:begin|>a1b2c3d4e5<|tool_call:name|>get_weather<|tool_call:args|>
    {"city": "Paris"}<|tool_call:end|><|calls|>

(on one line). The template asks for ids of 10 lowercase letters or digits and
matches each tool result to its call by id, so a history's ids are mapped to
stable ids of that shape (:func:`solar_call_id_for`) and the model's own id is
the call id the client gets (a fresh one when it repeats an id of the same
answer). ``<|tool_calls|>`` is the lazy grammar's trigger word.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
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

TOOL_CALLS = "<|tool_calls|>"
CALL_BEGIN = "<|tool_call:begin|>"
CALL_NAME = "<|tool_call:name|>"
CALL_ARGS = "<|tool_call:args|>"
CALL_END = "<|tool_call:end|>"
CALLS_END = "<|calls|>"

SOLAR = SectionFormat(TOOL_CALLS, CALL_BEGIN, CALL_ARGS, CALL_END, CALLS_END)

_ID_CHARS = string.ascii_lowercase + string.digits
_ID = re.compile(r"[a-z0-9]{10}\Z")
_NAME = re.compile(r"[^<>\n]{1,128}\Z")
_SAMPLE_IDS = ("a1b2c3d4e5", "k9j8h7g6f5", "0000000001", "zzzzzzzzzz")


def new_solar_call_id() -> str:
    """A fresh id of Solar's shape: 10 lowercase letters or digits."""
    return "".join(secrets.choice(_ID_CHARS) for _ in range(10))


def solar_call_id_for(call_id: str) -> str:
    """A stable id of Solar's shape for a client's id, so a history renders the same every time."""
    if _ID.match(call_id):
        return call_id
    digest = hashlib.sha256(call_id.encode()).digest()
    return "".join(_ID_CHARS[b % len(_ID_CHARS)] for b in digest[:10])


def _read_header(header: str) -> tuple[str, str | None] | None:
    call_id, sep, name = header.partition(CALL_NAME)
    if not sep or not _NAME.match(name):
        return None
    return name, call_id if _ID.match(call_id) else None


def _calls(calls: Sequence[Call]) -> str:
    return SOLAR.section_text([(f"{i}{CALL_NAME}{n}", a) for (n, a), i in zip(calls, _SAMPLE_IDS, strict=False)])


@register(detect_priority=80)
class SolarOpenStyle(DialectStyle):
    name = "solar-open"
    rule_prefix = "solar"
    fallback_prompt = "tools-solar-open.jinja"
    special_tokens = SOLAR.tokens + (CALL_NAME,)
    samples = Samples(
        templates=("upstage-Solar-Open-100B.jinja",),
        calls=_calls,
        # the history call's id is the client's, mapped to 10 characters
        history_call=lambda n, a: f"{CALL_NAME}{n}{CALL_ARGS}{a}{CALL_END}",
        fallback_call=lambda n, a: f"{CALL_NAME}{n}{CALL_ARGS}{a}{CALL_END}",
        call_tokens=96,  # the model's 10-character id comes first
        outputs=(
            SampleOutput(f'{TOOL_CALLS}{CALL_BEGIN}a1b2c3d4e5{CALL_NAME}get_weather{CALL_ARGS}{{"city": "Paris"}}'
                         f'{CALL_END}{CALLS_END}', "", (("get_weather", {"city": "Paris"}),)),
            SampleOutput(f'Sure.{TOOL_CALLS}{CALL_BEGIN}a1b2c3d4e5{CALL_NAME}f{CALL_ARGS}{{"a": 1}}{CALL_END}'
                         f'{CALL_BEGIN}a1b2c3d4e5{CALL_NAME}g{CALL_ARGS}{{}}{CALL_END}{CALLS_END}', "Sure.",
                         (("f", {"a": 1}), ("g", {}))),
            SampleOutput(f"{TOOL_CALLS} is followed by no call at all", f"{TOOL_CALLS} is followed by no call at all"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return CALL_BEGIN in template_source and CALL_NAME in template_source

    def _header_rule(self, i: int, spec: ToolSpec) -> str:
        return f"[a-z0-9]{{10}} {lit(CALL_NAME + spec.name)}"

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """One ``<|tool_calls|>`` section of up to ``max_calls`` calls, each with a 10-character id."""
        return section_grammar(builder, tools, SOLAR, self.rule_prefix, self._header_rule)

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": TOOL_CALLS}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return SectionParser(SOLAR, _read_header, enabled=tools.mode != "none", make_id=new_solar_call_id)

    def map_call_id(self, call_id: str) -> str:
        return solar_call_id_for(call_id)

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        header = f"{solar_call_id_for(call_id or name)}{CALL_NAME}{name}"
        return SOLAR.section_text([(header, arguments)])


__all__ = ["SOLAR", "SolarOpenStyle", "new_solar_call_id", "solar_call_id_for"]
