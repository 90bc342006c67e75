"""Mistral Nemo: ``[TOOL_CALLS][{"name": …, "arguments": {…}, "id": "a1B2c3D4e"}]``.

All calls of a turn form one JSON array after the ``[TOOL_CALLS]`` token, and
each carries an id the model writes itself: 9 alphanumerics, which Nemo's
template also demands of every id in the history (client ids of another shape
are mapped to stable 9-character ones). Because the id follows the arguments,
a call is announced once its object is complete rather than streamed.
"""

from __future__ import annotations

import json

from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects._jsonscan import Path
from oaiproxy.dialects.base import OutputParser
from oaiproxy.dialects.call_ids import new_short_call_id, short_call_id_for
from oaiproxy.dialects.gbnf import SHORT_WS, add_tool_args, alternatives, json_call_body, lit
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import SampleOutput, Samples, json_call
from oaiproxy.dialects.streaming import CallObjectReader, JsonCallSection
from oaiproxy.grammar import GrammarBuilder

TOOL_CALLS = "[TOOL_CALLS]"
_SAMPLE_IDS = ("a1B2c3D4e", "Z9y8X7w6v", "k3k3k3k3k", "m4M4m4M4m")


class MistralParser(JsonCallSection):
    """Content, then ``[TOOL_CALLS]`` and one JSON array of calls."""

    triggers = (TOOL_CALLS,)

    def _enter(self, trigger: str) -> None:
        self._mode = "calls"
        self._begin_json(trigger, None)
        self._readers: dict[int, CallObjectReader] = {}

    def _on_char(self, ch: str, path: Path | None, completed: list[Path]) -> None:
        if path is not None and len(path) >= 1:
            index = path[0]
            if isinstance(index, int) and index not in self._readers:
                self._readers[index] = CallObjectReader(
                    self, (index,), id_key="id", stream=False, make_id=new_short_call_id)
                self._follow(self._readers[index])
        for reader in list(self._readers.values()):
            if not reader.done:
                reader.on_char(ch, path, completed)

    def _section(self) -> None:
        if self._scan_json(self._on_char):
            self._mode = "after"

    def _end_section(self) -> None:
        if self._mode == "calls":
            self._abort_calls(self._readers.values())
        self._buf = ""


@register(detect_priority=50)
class MistralNemoStyle(DialectStyle):
    name = "mistral-nemo"
    rule_prefix = "mistral"
    fallback_prompt = "tools-mistral.jinja"
    special_tokens = (TOOL_CALLS,)
    samples = Samples(
        templates=("mistralai-Mistral-Nemo-Instruct-2407.jinja",),
        calls=lambda calls: TOOL_CALLS + "[" + ", ".join(
            json_call(n, a)[:-1] + f', "id": "{i}"}}' for (n, a), i in zip(calls, _SAMPLE_IDS, strict=False)) + "]",
        # the history call's id is the client's, mapped to 9 characters
        history_call=lambda n, a: f'{TOOL_CALLS}[{json_call(n, a)[:-1]}, "id": "',
        fallback_call=lambda n, a: f'{TOOL_CALLS}[{json_call(n, a)[:-1]}, "id": "',
        call_tokens=64,  # the model's 9-character id follows the arguments
        outputs=(
            SampleOutput('Let me see.[TOOL_CALLS][{"name": "f", "arguments": {"a": 1}, "id": "a1B2c3D4e"}, '
                         '{"name": "g", "arguments": {}, "id": "Z9y8X7w6v"}]', "Let me see.",
                         (("f", {"a": 1}), ("g", {}))),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        # later Mistral templates write [TOOL_CALLS]name[ARGS]{…} instead of a JSON array
        return TOOL_CALLS in template_source and "[ARGS]" not in template_source \
            and "[CALL_ID]" not in template_source

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """``[TOOL_CALLS]`` and one JSON array of up to ``max_calls`` calls, each with a 9-character id."""
        ws = builder.add_rule("mistral-ws", SHORT_WS)
        call_id = builder.add_rule("mistral-id", f'{lit(json.dumps("id"))} {ws} ":" {ws} "\\"" [a-zA-Z0-9]{{9}} "\\""')
        args = add_tool_args(builder, tools, "mistral")
        call = alternatives(builder, "mistral-call", [
            builder.add_rule(f"mistral-tool{i}-call",
                             json_call_body(spec.name, args[spec.name], ws, tail=f'"," {ws} {call_id}'))
            for i, spec in tools.indexed])
        more = tools.max_calls - 1
        rest = f' ( "," {ws} {call} ){{0,{more}}}' if more else ""
        return builder.add_rule("mistral-calls", f'{lit(TOOL_CALLS)} "[" {ws} {call}{rest} {ws} "]"')

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": TOOL_CALLS}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return MistralParser(enabled=tools.mode != "none")

    def map_call_id(self, call_id: str) -> str:
        return short_call_id_for(call_id)

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return (f'{TOOL_CALLS}[{{"name": {json.dumps(name)}, "arguments": {arguments}, '
                f'"id": {json.dumps(short_call_id_for(call_id or name))}}}]')
