"""OpenAI harmony (gpt-oss, LLM-jp 4.1 thinking): messages on channels, calls addressed ``to=functions.NAME``.

A harmony answer is a run of assistant messages, each a header, ``<|message|>``
and a body. The generation prompt ends with ``<|start|>assistant``, so the
answer opens with the first message's header::

    <|channel|>final<|message|>It is sunny.<|return|>
    <|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>

The ``final`` channel is the answer's content, a ``commentary`` message without
a recipient a preamble the user sees too (content), ``analysis`` the reasoning.
The recipient may also stand in the role part of the header, before the channel,
which is how both templates write a past call
(``<|start|>assistant to=functions.NAME<|channel|>commentary json<|message|>…``;
LLM-jp's says ``<|constrain|> json``). Several calls are several messages:
``<|end|><|start|>assistant`` between them, ``<|call|>`` after the last.

The ``analysis`` channel is the reasoning format (``oaiproxy.dialects.reasoning``
detects it from the template: opener ``<|channel|>analysis<|message|>``, closer
``<|end|>``, resume ``<|start|>assistant``). The engine generates it apart, so
the answer phase starts after ``<|end|><|start|>assistant``, where a prompt
without reasoning ends too: the grammar and the parser start at a header.
The grammar writes either header form (recipient in the channel, as the model
writes it, or in the role, as the templates do), the arguments as JSON through
the schema converter, and an optional closing ``<|call|>`` (on gpt-oss an
end-of-generation token, allowed once the grammar is complete); ``<|call|>`` and
``<|return|>`` are stop words for models that spell them as text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.base import OutputParser
from oaiproxy.dialects.gbnf import add_tool_args, alternatives, lit, repeat_rule
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.registry import register
from oaiproxy.dialects.samples import Call, SampleOutput, Samples
from oaiproxy.dialects.streaming import JsonCallSection, find_trigger
from oaiproxy.grammar import GrammarBuilder

START = "<|start|>"
#: what opens every assistant message: the generation prompt ends with it, and it follows each ``<|end|>``
ASSISTANT = START + "assistant"
CHANNEL = "<|channel|>"
CONSTRAIN = "<|constrain|>"
MESSAGE = "<|message|>"
END = "<|end|>"
RETURN = "<|return|>"
CALL = "<|call|>"
#: a recipient, in the role part of a header or after the channel
RECIPIENT = " to=functions."
#: the texts that end a message's body
ENDS = (END, RETURN, CALL)
#: the header of a call as the model writes it (recipient after the channel); also the lazy trigger word
CALL_OPENER = f"{CHANNEL}commentary{RECIPIENT}"
#: the header of the answer's content
FINAL_HEADER = f"{CHANNEL}final{MESSAGE}"

_NAME = r"[^<>\s]{1,128}"
#: a whole header (the text before ``<|message|>``): recipient in the role or the channel, optional constraint
HEADER = re.compile(rf"(?:{re.escape(RECIPIENT)}(?P<r1>{_NAME}))?{re.escape(CHANNEL)}"
                    rf"(?P<ch>final|commentary|analysis)(?:{re.escape(RECIPIENT)}(?P<r2>{_NAME}))?"
                    rf"(?: ?(?:{re.escape(CONSTRAIN)})? ?[A-Za-z0-9_-]+)?")
#: a header longer than this (still without ``<|message|>``) is not one
MAX_HEADER = 256
#: the openings of a header
_OPENERS = (CHANNEL, RECIPIENT)


def call_text(name: str, arguments: str) -> str:
    """One call as the model writes it (recipient in the channel), without the closing token."""
    return f"{CALL_OPENER}{name} {CONSTRAIN}json{MESSAGE}{arguments}"


def _calls_text(calls: Sequence[Call]) -> str:
    return (END + ASSISTANT).join(call_text(n, a) for n, a in calls) + CALL


class HarmonyParser(JsonCallSection):
    """Harmony messages after ``<|start|>assistant``: content from ``final`` and preambles, calls from recipients.

    Modes: ``head`` (a header, up to ``<|message|>``), the core's ``content``
    (a final or preamble body, or text that is no harmony at all), ``args`` (a
    call's JSON arguments), ``tail`` (after the arguments, before the end token),
    ``between`` (after an end token, before the next ``<|start|>assistant``) and
    ``skip`` (an ``analysis`` body: reasoning, not shown). With ``calls`` off, a
    call's header and arguments are text.
    """

    triggers = (*ENDS, ASSISTANT, CHANNEL)

    def __init__(self, calls: bool = True) -> None:
        super().__init__()
        self._calls = calls
        self._mode = "head"

    def _enter(self, trigger: str) -> None:
        if trigger in ENDS:
            self._mode = "between"
        elif trigger == ASSISTANT:
            self._mode = "head"
        else:  # a channel token inside text: a header may start here
            self._buf = trigger + self._buf
            self._mode = "head"

    def _section(self) -> None:
        mode = self._mode
        if mode == "head":
            self._head()
        elif mode == "args":
            if self._stream_arguments():
                self._open_call = None
                self._mode = "tail"
        elif mode == "tail":
            self._tail()
        elif mode == "between":
            self._between()
        elif mode == "skip":
            pos, end = find_trigger(self._buf, ENDS)
            self._buf = self._buf[pos + len(end):] if end else self._buf[pos:]
            if end:
                self._mode = "between"

    def _head(self) -> None:
        buf = self._buf
        if not any(buf.startswith(o) for o in _OPENERS):
            if not any(o.startswith(buf) for o in _OPENERS):
                self._mode = "content"  # no header: text (that may still hold a call's trigger)
            return
        at = buf.find(MESSAGE)
        if at < 0:
            if len(buf) > MAX_HEADER or "\n" in buf or START in buf or any(e in buf for e in ENDS):
                self._not_a_header()
            return
        header = buf[:at]
        found = HEADER.fullmatch(header)
        if found is None:
            self._not_a_header()
            return
        self._buf = buf[at + len(MESSAGE):]
        name = found["r1"] or found["r2"]
        if name and self._calls:
            self._begin_arguments(self.start_call(name))
            self._mode = "args"
        elif name:
            self.emit_content(header + MESSAGE)
            self._mode = "content"
        else:
            self._mode = "skip" if found["ch"] == "analysis" else "content"

    def _not_a_header(self) -> None:
        """What looked like a header is text: its opening is content, the rest is read as text."""
        opener = next(o for o in _OPENERS if self._buf.startswith(o))
        self.emit_content(opener)
        self._buf = self._buf[len(opener):]
        self._mode = "content"

    def _tail(self) -> None:
        stripped = self._buf.lstrip()
        for end in (*ENDS, ASSISTANT):
            if stripped.startswith(end):
                self._buf = stripped[len(end):]
                self._mode = "between" if end in ENDS else "head"
                return
            if end.startswith(stripped):
                return
        self._mode = "content"  # text after a call's arguments, without an end token

    def _between(self) -> None:
        stripped = self._buf.lstrip()
        if stripped.startswith(ASSISTANT):
            self._buf = stripped[len(ASSISTANT):]
            self._mode = "head"
        elif stripped and not ASSISTANT.startswith(stripped):
            self._mode = "content"

    def _end_section(self) -> None:
        mode = self._mode
        if mode == "head":
            if RECIPIENT in self._buf and self._calls:
                self.truncated = True  # a call's header, cut before its arguments: markup, not text
            else:
                self.emit_content(self._buf)
        elif mode == "args":
            self.truncated = True
        elif mode == "between" and self._buf.strip() and not ASSISTANT.startswith(self._buf.strip()):
            self.emit_content(self._buf)
        self._buf = ""


@register(detect_priority=110)
class HarmonyStyle(DialectStyle):
    name = "harmony"
    rule_prefix = "harmony"
    fallback_prompt = "tools-harmony.jinja"
    special_tokens = (START, CHANNEL, CONSTRAIN, MESSAGE, END, RETURN, CALL)
    stop_words = (RETURN, CALL)
    answer_prefix = FINAL_HEADER
    samples = Samples(
        templates=("openai-gpt-oss-120b.jinja", "llm-jp-llm-jp-4.1-8b-thinking.jinja"),
        calls=_calls_text,
        history_call=lambda n, a: f"to=functions.{n}{CHANNEL}commentary",
        fallback_call=call_text,
        call_tokens=64,
        outputs=(
            SampleOutput(f"{CHANNEL}commentary{MESSAGE}I will check.{END}{ASSISTANT}"
                         f"{call_text('get_weather', json.dumps({'city': 'Paris'}))}{CALL}", "I will check.",
                         (("get_weather", {"city": "Paris"}),)),
            SampleOutput(f'{RECIPIENT}f{CHANNEL}commentary json{MESSAGE}{{"a": "x\\"y"}}{END}{ASSISTANT}'
                         f"{RECIPIENT}g{CHANNEL}commentary {CONSTRAIN} json{MESSAGE}{{}}{CALL}", "",
                         (("f", {"a": 'x"y'}), ("g", {}))),
            SampleOutput(f"{FINAL_HEADER}It is sunny, 21 °C.{RETURN}", "It is sunny, 21 °C."),
            SampleOutput("The weather is nice <|in Paris|> today", "The weather is nice <|in Paris|> today"),
            SampleOutput(f"{CHANNEL}analysis{MESSAGE}Think.{END}{ASSISTANT}{FINAL_HEADER}Hi", "Hi"),
        ),
    )

    @classmethod
    def detect(cls, template_source: str) -> bool:
        return all(token in template_source for token in (CHANNEL, MESSAGE, CALL))

    # -- grammar ----------------------------------------------------------------------------

    def calls_grammar(self, builder: GrammarBuilder, tools: ToolPlan) -> str:
        """One commentary message per call, either header form, ``<|end|><|start|>assistant`` between them."""
        args = add_tool_args(builder, tools, "harmony")
        constraint = builder.add_rule("harmony-constraint",
                                      f'( " " {lit(CONSTRAIN)} " "? "json" | " json" )?')
        bodies = []
        for i, spec in tools.indexed:
            name = lit(spec.name)
            in_role = f"{lit(RECIPIENT)} {name} {lit(CHANNEL + 'commentary')}"
            in_channel = f"{lit(CALL_OPENER)} {name}"
            bodies.append(builder.add_rule(
                f"harmony-tool{i}-call", f"( {in_role} | {in_channel} ) {constraint} {lit(MESSAGE)} {args[spec.name]}"))
        call = alternatives(builder, "harmony-call", bodies)
        sep = builder.add_rule("harmony-sep", lit(END + ASSISTANT))
        return builder.add_rule("harmony-calls", f"( {repeat_rule(call, sep, tools.max_calls)} ) {lit(CALL)}?")

    def lazy_triggers(self, tools: ToolPlan) -> list[dict[str, str]]:
        """The call header after the channel, anywhere; the recipient in the role, at a message's start."""
        role = f"(?:[\\s\\S]*?{re.escape(ASSISTANT)})?({re.escape(RECIPIENT)})[\\s\\S]*"
        return [{"type": "word", "value": CALL_OPENER}, {"type": "pattern_full", "value": role}]

    def make_parser(self, tools: ToolPlan) -> OutputParser:
        return HarmonyParser(calls=tools.mode != "none")

    def format_call_text(self, name: str, arguments: str, call_id: str) -> str:
        return call_text(name, arguments) + CALL

    def adjust_history(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One call per assistant message, each followed by its results, for a template that writes only the first.

        gpt-oss's template renders ``tool_calls[0]`` and names a tool result
        after the last call it wrote; harmony writes every call as a message of
        its own anyway.
        """
        if "tool_calls[0]" not in self.template.source:
            return messages
        out: list[dict[str, Any]] = []
        i = 0
        while i < len(messages):
            message = messages[i]
            calls = message.get("tool_calls") or []
            i += 1
            if message.get("role") != "assistant" or len(calls) < 2:
                out.append(message)
                continue
            results = []
            while i < len(messages) and messages[i].get("role") == "tool":
                results.append(messages[i])
                i += 1
            ids = {c.get("id") for c in calls}
            for k, call in enumerate(calls):
                first = {key: v for key, v in message.items() if k == 0 or key in ("role",)}
                out.append({**first, "content": message.get("content") if k == 0 else "", "tool_calls": [call]})
                out.extend(r for r in results if r.get("tool_call_id") == call.get("id"))
            out.extend(r for r in results if r.get("tool_call_id") not in ids)
        return out


__all__ = ["HarmonyParser", "HarmonyStyle", "call_text"]
