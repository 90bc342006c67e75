"""JSON calls inside a format's own tags: one module for every "opening text, JSON call objects, closing text" format.

Several models write their calls as the same ``{"name": …, "arguments": …}``
objects and differ only in what surrounds them:

* a JSON list between tags: Apriel ``<tool_calls>[{…}, {…}]</tool_calls>``,
  Nemotron Nano v2 ``<TOOLCALL>[…]</TOOLCALL>``, FireFunction v2
  `` functools[…]`` (no closing text);
* one object per line between tags: MiniMax-M1 ``<tool_calls>\\n{…}\\n{…}\\n</tool_calls>``;
* one object after each opening, no closing text: GigaChat 3's ``function call``
  role turn (``<|message_sep|>\\n\\nfunction call<|role_sep|>\\n{…}``) and GigaChat
  3.1's ``<|function_call|>{…}``. Their templates write the first call of a turn
  only, so the history gives each call its own turn (as Llama's does); the model
  may open one turn after another.

A :class:`TagForm` declares one format; the grammar, the parser, the call text
of a history and the sample texts are all derived from it, so a format is a
:class:`TagForm` and a registered subclass of :class:`JsonTagsStyle`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects._jsonscan import Path
from oaiproxy.dialects.base import OutputParser
from oaiproxy.dialects.gbnf import SHORT_WS, add_tool_args, alternatives, json_call_body, lit, repeat_rule
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.prompting import one_call_per_turn
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import Call, SampleOutput, Samples, json_call
from oaiproxy.dialects.streaming import CallObjectReader, JsonCallSection
from oaiproxy.grammar import GrammarBuilder
from oaiproxy.templating.chat_template import ChatTemplate

#: how the call objects sit between the opening and the closing text
Layout = Literal["list", "lines", "one"]


@dataclass(frozen=True)
class TagForm:
    """One format: the text that opens its calls, the text that closes them, and how the objects are laid out.

    ``layout``: ``"list"`` one JSON array of call objects; ``"lines"`` call objects
    one per line; ``"one"`` a single call object after each ``opener``.
    ``lead`` is text the format writes just before ``opener`` (GigaChat's end of
    the assistant turn, FireFunction's space): optional in the grammar, part of
    a parser trigger, so it never shows up as content.
    """

    opener: str
    layout: Layout
    closer: str = ""
    lead: str = ""
    #: text the template writes between the opener and the objects (and before the closer)
    inner: str = ""
    #: the key of the arguments in a call object
    args_key: str = "arguments"

    @property
    def triggers(self) -> tuple[str, ...]:
        """What starts a calls section in the parser (the longest first, so the lead is not content)."""
        return (self.lead + self.opener, self.opener) if self.lead else (self.opener,)

    def write(self, calls: Sequence[Call]) -> str:
        """The calls as the format writes them (the template's own spacing, with the lead)."""
        objects = [json_call(name, arguments, self.args_key) for name, arguments in calls]
        start = self.lead + self.opener + self.inner
        if self.layout == "one":
            return "".join(start + obj for obj in objects)
        if self.layout == "list":
            body = "[" + ", ".join(objects) + "]"
        else:
            body = "".join(obj + "\n" for obj in objects)
        return start + body + self.closer


class JsonTagsParser(JsonCallSection):
    """Content, then ``form``'s opening text and JSON call objects; arguments stream as written.

    A section that holds no call (the opening text in prose, ``functools`` followed
    by no list) is given back as content. A missing closing text does not undo
    whole calls.
    """

    def __init__(self, form: TagForm, enabled: bool = True) -> None:
        super().__init__(enabled)
        self._form = form
        self.triggers = form.triggers
        self._readers: dict[int, CallObjectReader] = {}
        self._opened = ""
        self._section_calls = 0

    def _enter(self, trigger: str) -> None:
        self._opened = trigger
        self._section_calls = 0
        layout = self._form.layout
        if layout == "list":
            self._mode = "list"
            self._readers = {}
            self._begin_json(trigger, None)
        elif layout == "lines":
            self._mode = "lines"
            self._hold(trigger)
        else:
            self._mode = "call"
            self._begin_json(trigger, CallObjectReader(self, (), args_keys=(self._form.args_key,)))

    # -- the JSON list ------------------------------------------------------------------------

    def _on_list_char(self, ch: str, path: Path | None, completed: list[Path]) -> None:
        if path is not None and len(path) >= 1:
            index = path[0]
            if isinstance(index, int) and index not in self._readers:
                self._readers[index] = CallObjectReader(self, (index,), args_keys=(self._form.args_key,))
                self._follow(self._readers[index])
        for reader in self._readers.values():
            if not reader.done:
                reader.on_char(ch, path, completed)

    # -- the modes ----------------------------------------------------------------------------

    def _section(self) -> None:
        mode = self._mode
        if mode == "list":
            done = self._scan_json(self._on_list_char)
            if done and not self._readers:  # a JSON value that holds no call: it was text
                self._replay()
                self._mode = "content"
            elif done:
                self._close()
        elif mode == "lines":
            self._next_line()
        elif mode == "call":
            if self._scan_with_reader():
                self._section_calls += 1
                if self._form.layout == "one":
                    self._mode = "after"
                else:
                    self._mode = "lines"
        elif mode == "close":
            if self._expect(self._form.closer) is not False:  # a missing closing text does not undo the calls
                self._mode = "after"

    def _close(self) -> None:
        self._mode = "close" if self._form.closer else "after"

    def _next_line(self) -> None:
        """Between MiniMax's call lines: another object, the closing text, or (no call yet) text after all."""
        stripped = self._buf.lstrip()
        closer = self._form.closer
        if not stripped or (closer.startswith(stripped) and stripped != closer):
            return  # undecided: whitespace, or the closing text still arriving
        if stripped.startswith("{"):
            self._mode = "call"
            self._begin_json(self._opened if not self._section_calls else "",
                             CallObjectReader(self, (), args_keys=(self._form.args_key,)))
        elif self._section_calls:
            self._mode = "close"
        else:
            self._replay(with_pending=True)
            self._mode = "content"

    def _end_section(self) -> None:
        mode = self._mode
        if mode == "list":
            self._abort_calls(self._readers.values())
        elif mode == "call":
            self._abort_json()
        elif mode == "lines" and not self._section_calls:
            self._replay(with_pending=True)
        elif mode == "close" and self._expect(self._form.closer) is None:
            self.emit_content(self._buf)
        self._buf = ""


class JsonTagsStyle(DialectStyle):
    """A format of :class:`TagForm`: subclasses set ``form``, ``name``, ``rule_prefix``, ``special_tokens``,
    ``samples`` and ``detect``."""

    form: ClassVar[TagForm]
    fallback_prompt = "tools-json-tags.jinja"

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """The opening text, the call objects as the layout wants them (up to ``max_calls``), the closing text."""
        form, p = self.form, self.rule_prefix
        ws = builder.add_rule(f"{p}-ws", SHORT_WS)
        args = add_tool_args(builder, tools, p)
        call = alternatives(builder, f"{p}-call", [
            builder.add_rule(f"{p}-tool{i}-call", json_call_body(spec.name, args[spec.name], ws, form.args_key))
            for i, spec in tools.indexed])
        start = f"{lit(form.opener)} {ws}"
        if form.lead:
            start = f"{lit(form.lead)}? {start}"
        close = f" {ws} {lit(form.closer)}" if form.closer else ""
        if form.layout == "one":
            block = builder.add_rule(f"{p}-block", f"{start} {call}")
            return builder.add_rule(f"{p}-calls", repeat_rule(block, ws, tools.max_calls))
        if form.layout == "list":
            items = repeat_rule(call, f'"," {ws}', tools.max_calls)
            body = f'"[" {ws} {items} {ws} "]"'
        else:
            body = repeat_rule(call, ws, tools.max_calls)
        return builder.add_rule(f"{p}-calls", f"{start} {body}{close}")

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        # the grammar starts at the opener; a lead the model writes before it stays free text for llama-server
        return [{"type": "word", "value": self.form.opener}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return JsonTagsParser(self.form, enabled=tools.mode != "none")

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return self.form.write([(name, arguments)])

    def fallback_prompt_values(self) -> dict[str, Any]:
        """What ``templates/tools-json-tags.jinja`` says about this format: its opening, closing and a call."""
        return {"example": self.form.write([("<function-name>", "<args-json-object>")]).strip()}


def _samples(form: TagForm, templates: tuple[str, ...], *outputs: SampleOutput, call_tokens: int = 64,
             history_call: Callable[[str, str], str] | None = None) -> Samples:
    """The test material every format of this module shares, spelled from its form."""
    return Samples(
        templates=templates,
        calls=form.write,
        history_call=history_call or (lambda n, a: form.write([(n, a)])[len(form.lead):]),
        call_tokens=call_tokens,
        outputs=outputs,
    )


APRIEL = TagForm("<tool_calls>", "list", closer="</tool_calls>")


@register(detect_priority=102)
class AprielStyle(JsonTagsStyle):
    """ServiceNow Apriel 1.5 / 1.6: ``<tool_calls>[{"name": …, "arguments": …}, …]</tool_calls>``."""

    name = "apriel"
    rule_prefix = "apriel"
    form = APRIEL
    special_tokens = (APRIEL.opener, APRIEL.closer)
    samples = _samples(
        APRIEL, ("Apriel-1.6-15b-Thinker-fixed.jinja", "unsloth-Apriel-1.5.jinja"),
        SampleOutput('Checking.\n<tool_calls>[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
                     '{"name": "g", "arguments": {}}]</tool_calls>', "Checking.\n",
                     (("get_weather", {"city": "Paris"}), ("g", {}))),
        SampleOutput('<tool_calls>[\n  {"arguments": {"a": "x\\"y"}, "name": "f"}\n]</tool_calls>', "",
                     (("f", {"a": 'x"y'}),)),
        SampleOutput("I would use <tool_calls> here.", "I would use <tool_calls> here."),
        # a past call carries its id ("id" after the arguments), the answer being written does not
        history_call=lambda n, a: APRIEL.write([(n, a)])[: -len("}]" + APRIEL.closer)],
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return "<tool_calls>[" in template_source


NEMOTRON_V2 = TagForm("<TOOLCALL>", "list", closer="</TOOLCALL>")


@register(detect_priority=100)
class NemotronV2Style(JsonTagsStyle):
    """NVIDIA Nemotron Nano v2: ``<TOOLCALL>[{"name": …, "arguments": …}, …]</TOOLCALL>``."""

    name = "nemotron-v2"
    rule_prefix = "nemotron2"
    form = NEMOTRON_V2
    special_tokens = (NEMOTRON_V2.opener, NEMOTRON_V2.closer)
    samples = _samples(
        NEMOTRON_V2, ("NVIDIA-Nemotron-Nano-v2.jinja",),
        SampleOutput('Sure.\n<TOOLCALL>[{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {}}]'
                     '</TOOLCALL>', "Sure.\n", (("f", {"a": 1}), ("g", {}))),
        SampleOutput("<TOOLCALL> then no list", "<TOOLCALL> then no list"),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return "<TOOLCALL>[" in template_source


MINIMAX_M1 = TagForm("<tool_calls>", "lines", closer="</tool_calls>", inner="\n")


@register(detect_priority=101)
class MiniMaxM1Style(JsonTagsStyle):
    """MiniMax-M1: ``<tool_calls>`` then one ``{"name": …, "arguments": …}`` per line, then ``</tool_calls>``."""

    name = "minimax-m1"
    rule_prefix = "minimax1"
    form = MINIMAX_M1
    special_tokens = (MINIMAX_M1.opener, MINIMAX_M1.closer)
    samples = _samples(
        MINIMAX_M1, ("MiniMax-M1.jinja",),
        SampleOutput('Let me look.\n<tool_calls>\n{"name": "f", "arguments": {"a": [1, 2]}}\n'
                     '{"name": "g", "arguments": {}}\n</tool_calls>', "Let me look.\n",
                     (("f", {"a": [1, 2]}), ("g", {}))),
        SampleOutput("<tool_calls>\nnone needed</tool_calls>", "<tool_calls>\nnone needed</tool_calls>"),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        # Apriel's templates also say <tool_calls>, followed by a JSON list
        return "<tool_calls>" in template_source and "<tool_calls>[" not in template_source


FIREFUNCTION_V2 = TagForm("functools", "list", lead=" ")

#: FireFunction's template reads the tools as ``functions`` (their JSON text) and the date as ``datetime``,
#: which its own server passed (as llama.cpp does); this prelude derives both, so the template's own
#: tools support is used (and probed) like any other's
_FIREFUNCTION_PRELUDE = (
    "{%- if functions is not defined -%}{%- set functions = tools | tojson(indent=2) if tools is defined "
    "else '' -%}{%- endif -%}"
    "{%- if datetime is not defined -%}{%- set datetime = strftime_now('%b %d %Y %H:%M:%S GMT') -%}{%- endif -%}"
)


@register(detect_priority=99)
class FireFunctionV2Style(JsonTagsStyle):
    """FireFunction v2: `` functools[{"name": …, "arguments": …}, …]`` with no closing text."""

    name = "firefunction-v2"
    rule_prefix = "firefunc2"
    form = FIREFUNCTION_V2

    def __init__(self, template: ChatTemplate) -> None:
        super().__init__(ChatTemplate(_FIREFUNCTION_PRELUDE + template.source, bos_token=template.bos_token,
                                      eos_token=template.eos_token, name=template.name, limits=template.limits))
    samples = _samples(
        FIREFUNCTION_V2, ("fireworks-ai-llama-3-firefunction-v2.jinja",),
        SampleOutput('One moment. functools[{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {}}]',
                     "One moment.", (("f", {"a": 1}), ("g", {}))),
        SampleOutput("Python's functools module", "Python's functools module"),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return "functools[" in template_source


MESSAGE_SEP = "<|message_sep|>"
ROLE_SEP = "<|role_sep|>"
GIGACHAT3 = TagForm(f"function call{ROLE_SEP}", "one", lead=f"{MESSAGE_SEP}\n\n", inner="\n")


class _OneCallPerTurn(JsonTagsStyle):
    """GigaChat's templates write the first call of an assistant turn only: each call gets its own turn."""

    def adjust_history(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return one_call_per_turn(messages)


@register(detect_priority=103)
class GigaChat3Style(_OneCallPerTurn):
    """GigaChat 3: each call a ``function call`` role turn after the assistant's
    (``<|message_sep|>\\n\\nfunction call<|role_sep|>\\n{"name": …, "arguments": …}``)."""

    name = "gigachat3"
    rule_prefix = "gigachat3"
    form = GIGACHAT3
    special_tokens = (MESSAGE_SEP, ROLE_SEP)
    samples = _samples(
        GIGACHAT3, ("GigaChat3-10B-A1.8B.jinja",),
        SampleOutput('Checking.<|message_sep|>\n\nfunction call<|role_sep|>\n{"name": "f", "arguments": {"a": 1}}',
                     "Checking.", (("f", {"a": 1}),)),
        SampleOutput('function call<|role_sep|>\n{"name": "f", "arguments": {}}', "", (("f", {}),)),
        SampleOutput("a function call<|role_sep|> of no JSON", "a function call<|role_sep|> of no JSON"),
        call_tokens=80,  # the lead and the role name cost the small model ~16 tokens
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return "'function call'" in template_source and ROLE_SEP in template_source \
            and "<|function_call|>" not in template_source


GIGACHAT31 = TagForm("<|function_call|>", "one")


@register(detect_priority=104)
class GigaChat31Style(_OneCallPerTurn):
    """GigaChat 3.1: ``<|function_call|>{"name": …, "arguments": …}`` after the turn's content."""

    name = "gigachat3.1"
    rule_prefix = "gigachat31"
    form = GIGACHAT31
    special_tokens = (GIGACHAT31.opener, MESSAGE_SEP)
    samples = _samples(
        GIGACHAT31, ("GigaChat3.1-10B-A1.8B.jinja",),
        SampleOutput('Checking.<|function_call|>{"name": "f", "arguments": {"a": 1}}', "Checking.",
                     (("f", {"a": 1}),)),
        SampleOutput("<|function_call|>not JSON", "<|function_call|>not JSON"),
        call_tokens=80,
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return "<|function_call|>" in template_source and ROLE_SEP in template_source


__all__ = ["AprielStyle", "FireFunctionV2Style", "GigaChat31Style", "GigaChat3Style", "JsonTagsParser",
           "JsonTagsStyle", "MiniMaxM1Style", "NemotronV2Style", "TagForm"]
