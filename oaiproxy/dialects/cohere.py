"""Command R7B / Command A / Command R+: a JSON list of ``{"tool_name": …, "parameters": {…}}`` actions.

Command R7B and Command A / North (``Cohere2MoE``) write the list between
special tokens, each action numbered by the template::

    <|START_ACTION|>[
        {"tool_call_id": "0", "tool_name": "get_weather", "parameters": {"city": "Paris"}}
    ]<|END_ACTION|>

Command R+ writes it as a fenced JSON block after ``Action:``, without ids::

    Action: ```json
    [{"tool_name": "get_weather", "parameters": {"city": "Paris"}}]
    ```

The templates number the calls themselves (``tool_call_id`` is the call's
position in the conversation, and tool results are matched to it by the
client's id), so the ids the model writes are not kept: every call gets the
proxy's own id. A call is announced once its ``tool_name`` is complete and its
parameters stream as written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar

from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects._jsonscan import Path
from oaiproxy.dialects.base import OutputParser
from oaiproxy.dialects.gbnf import add_tool_args, alternatives, lit
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import Call, SampleOutput, Samples
from oaiproxy.dialects.streaming import CallObjectReader, JsonCallSection, StreamParser
from oaiproxy.grammar import GrammarBuilder

START_ACTION = "<|START_ACTION|>"
END_ACTION = "<|END_ACTION|>"
#: Command R+'s opening: the word, then a fenced JSON block
ACTION = "Action:"
FENCE_OPEN = "```json"
FENCE_CLOSE = "```"
NAME_KEY = "tool_name"
ARGS_KEY = "parameters"
ID_KEY = "tool_call_id"
#: where the templates break the list: a newline and a four-space indent (no more: a small model pads with it)
LIST_WS = '"\\n"? " "{0,4}'


class ActionReader(CallObjectReader):
    """A :class:`CallObjectReader` for ``{"tool_name": …, "parameters": …}``: ``tool_name`` read as the name."""

    def __init__(self, parser: StreamParser, prefix: Path) -> None:
        super().__init__(parser, prefix, args_keys=(ARGS_KEY,))
        self._at = len(prefix)
        self._own = prefix

    def _renamed(self, path: Path) -> Path:
        if len(path) > self._at and path[: self._at] == self._own and path[self._at] == NAME_KEY:
            return path[: self._at] + ("name",) + path[self._at + 1:]
        return path

    def on_char(self, ch: str, path: Path | None, completed: list[Path]) -> None:
        super().on_char(ch, None if path is None else self._renamed(path), [self._renamed(p) for p in completed])


class CohereParser(JsonCallSection):
    """Content, then ``opening`` (``fence``, if any) and one JSON list of actions, then ``closing``."""

    def __init__(self, enabled: bool = True, opening: str = START_ACTION, fence: str = "",
                 closing: str = END_ACTION) -> None:
        super().__init__(enabled)
        self.triggers = (opening,)
        self._fence = fence
        self._closing = closing
        self._read = ""
        self._readers: dict[int, ActionReader] = {}

    def _enter(self, trigger: str) -> None:
        self._read = trigger
        self._readers = {}
        if self._fence:
            self._mode = "fence"
        else:
            self._begin_json(trigger)
            self._mode = "calls"

    def _on_char(self, ch: str, path: Path | None, completed: list[Path]) -> None:
        if path is not None and path and isinstance(path[0], int) and path[0] not in self._readers:
            self._readers[path[0]] = ActionReader(self, (path[0],))
            self._follow(self._readers[path[0]])
        for reader in self._readers.values():
            if not reader.done:
                reader.on_char(ch, path, completed)

    def _section(self) -> None:
        if self._mode == "fence":
            stripped = self._buf.lstrip(" \t\n")
            if stripped.startswith(self._fence):
                taken = len(self._buf) - len(stripped) + len(self._fence)
                self._begin_json(self._read + self._buf[:taken])
                self._buf = self._buf[taken:]
                self._mode = "calls"
            elif not self._fence.startswith(stripped):
                self.emit_content(self._read)  # "Action:" in free text: the rest is scanned again
                self._mode = "content"
        elif self._mode == "calls":
            if self._scan_json(self._on_char):
                self._mode = "close"
        elif self._mode == "close" and self._expect(self._closing) is not False:
            self._mode = "after"

    def _end_section(self) -> None:
        if self._mode == "fence":
            self.emit_content(self._read + self._buf)
        elif self._mode == "calls":
            self._abort_calls(self._readers.values())
        elif self._mode == "close" and self._expect(self._closing) is None:
            self.emit_content(self._buf)
        self._buf = ""


def _action_text(name: str, arguments: str, index: int | None) -> str:
    number = f"{json.dumps(ID_KEY)}: {json.dumps(str(index))}, " if index is not None else ""
    return f"{{{number}{json.dumps(NAME_KEY)}: {json.dumps(name)}, {json.dumps(ARGS_KEY)}: {arguments}}}"


def _actions(calls: Sequence[Call]) -> str:
    return START_ACTION + "[\n    " + ",\n    ".join(
        _action_text(n, a, i) for i, (n, a) in enumerate(calls)) + "\n]" + END_ACTION


def _fenced(calls: Sequence[Call]) -> str:
    return f"{ACTION} {FENCE_OPEN}\n[" + ", ".join(_action_text(n, a, None) for n, a in calls) + f"]\n{FENCE_CLOSE}"


@register(detect_priority=92)
class CohereStyle(DialectStyle):
    name = "cohere"
    rule_prefix = "cohere"
    fallback_prompt = "tools-cohere.jinja"
    special_tokens: tuple[str, ...] = (START_ACTION, END_ACTION)
    samples: ClassVar[Samples | None] = Samples(
        templates=("CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja", "Cohere2MoE.jinja"),
        calls=_actions,
        call_tokens=64,  # the action's number and key names come before the parameters
        history_call=lambda n, a: f'{json.dumps(NAME_KEY)}: {json.dumps(n)}, {json.dumps(ARGS_KEY)}: {a}}}',
        fallback_call=lambda n, a: f'{json.dumps(NAME_KEY)}: {json.dumps(n)}, {json.dumps(ARGS_KEY)}: {a}}}',
        outputs=(
            SampleOutput('Let me look.<|START_ACTION|>[\n    {"tool_call_id": "0", "tool_name": "f", "parameters": '
                         '{"a": 1}},\n    {"parameters": {}, "tool_name": "g", "tool_call_id": "1"}\n]<|END_ACTION|>',
                         "Let me look.", (("f", {"a": 1}), ("g", {}))),
            SampleOutput("<|START_ACTION|> is not followed by a list", "<|START_ACTION|> is not followed by a list"),
        ),
    )
    #: ``tool_call_id`` in each action (Command R7B, Command A); R+ writes none
    numbered = True
    #: the fence after the opening (R+'s ```json), and the text that closes the list
    opening, fence, closing = START_ACTION, "", END_ACTION

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return START_ACTION in template_source and END_ACTION in template_source

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """The opening, a list of up to ``max_calls`` actions, one alternative per tool, and the closing;
        the list broken over lines as the templates write it, an action on one line."""
        p = self.rule_prefix
        nl = builder.add_rule(f"{p}-nl", LIST_WS)
        ws = builder.ws
        args = add_tool_args(builder, tools, p)
        number = f'{lit(json.dumps(ID_KEY))} ":" {ws} "\\"" [0-9]{{1,2}} "\\"" "," {ws} ' if self.numbered else ""
        call = alternatives(builder, f"{p}-call", [
            builder.add_rule(f"{p}-tool{i}-call",
                             f'"{{" {number}{lit(json.dumps(NAME_KEY))} ":" {ws} {lit(json.dumps(spec.name))} "," {ws} '
                             f'{lit(json.dumps(ARGS_KEY))} ":" {ws} {args[spec.name]} "}}"')
            for i, spec in tools.indexed])
        more = tools.max_calls - 1
        rest = f' ( "," {nl} {call} ){{0,{more}}}' if more else ""
        fence = f" {nl} {lit(self.fence)}" if self.fence else ""
        return builder.add_rule(f"{p}-calls", f'{lit(self.opening)}{fence} {nl} "[" {nl} {call}{rest} {nl} "]" {nl} '
                                              f'{lit(self.closing)}')

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        return [{"type": "word", "value": self.opening}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return CohereParser(enabled=tools.mode != "none", opening=self.opening, fence=self.fence,
                            closing=self.closing)

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return f"{self.opening}{' ' + self.fence if self.fence else ''}[{_action_text(name, arguments, None)}]" \
               f"{self.closing}"


@register(detect_priority=91)
class CommandRPlusStyle(CohereStyle):
    """Command R+: ``Action: ```json [ … ] ```, actions without ids. ``Action:`` wakes the grammar; the
    parser takes it for a call only when the fence follows."""

    name = "command-r-plus"
    rule_prefix = "cmdrplus"
    fallback_prompt = "tools-command-r-plus.jinja"
    special_tokens = ()
    # No samples: the sample templates are the covered ones, and R+'s own rendering of a past call
    # pretty-prints the parameters (tojson(indent=4)), which the shared argument grammar does not admit.
    # tests/styles/test_cohere.py tests this style's grammar and parser.
    samples = None
    numbered = False
    opening, fence, closing = ACTION, FENCE_OPEN, FENCE_CLOSE

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return "<|CHATBOT_TOKEN|>" in template_source and ACTION in template_source \
            and f"{json.dumps(NAME_KEY)}" in template_source and START_ACTION not in template_source
