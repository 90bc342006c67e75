"""The contract between a tool-calling dialect ("style") and the rest of the proxy.

The flow is one-way: an OpenAI request is normalised into a :class:`Conversation`,
a :class:`Style` turns it into a :class:`GenerationPlan` (prompt, grammar,
triggers, stops and a fresh :class:`OutputParser`), the plan goes to
llama-server's ``/completion``, and the parser turns the generated text back
into content and tool calls, chunk by chunk. Nothing here knows about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from oaiproxy.conversation.model import Conversation, ToolCall

if TYPE_CHECKING:
    from oaiproxy.dialects.samples import Samples
    from oaiproxy.templating.chat_template import ChatTemplate


@dataclass(frozen=True)
class ContentDelta:
    """Text the client may see now; it will never be retracted."""

    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of tool call ``index``: the first one carries ``id`` and ``name``."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


ParseEvent = ContentDelta | ToolCallDelta


@dataclass
class ParsedOutput:
    """The whole answer, once generation is over."""

    content: str | None
    tool_calls: list[ToolCall]


class OutputParser(Protocol):
    """Turns generated text into content and tool calls, incrementally.

    ``feed`` may be called with any split of the text (one character at a time
    included) and must yield the same events, concatenated, as one call with the
    whole text. Text that might still become a tool call is held back until
    it is decided.
    """

    def feed(self, chunk: str) -> list[ParseEvent]: ...

    def finish(self) -> list[ParseEvent]:
        """Flush what was held back; call once, after the last chunk."""
        ...

    def result(self) -> ParsedOutput:
        """The complete output; valid after :meth:`finish`."""
        ...


@dataclass(frozen=True)
class Reasoning:
    """How a model writes its reasoning section: the text that opens it and the text that closes it.

    The proxy generates the reasoning apart from the answer (free, no grammar,
    bounded by a budget) and then the answer after ``closer`` + ``resume``, so a
    trigger word inside the reasoning never starts a call and a required call
    still follows it. ``resume`` is what the format writes between the end of the
    reasoning and the answer (e.g. harmony's ``<|start|>assistant``); empty for
    ``<think>…</think>`` formats.
    """

    opener: str
    closer: str
    resume: str = ""


#: llama-server's ``common_grammar_trigger_type`` numbers, which ``/completion`` expects
TRIGGER_TYPES: dict[str, int] = {"token": 0, "word": 1, "pattern": 2, "pattern_full": 3}


@dataclass
class GenerationPlan:
    """Everything llama-server's ``/completion`` needs for one request, plus the parser."""

    prompt: str
    parser: OutputParser
    grammar: str | None = None
    grammar_lazy: bool = False
    # {"type": "word"|"pattern"|"pattern_full"|"token", "value": str}; completion_fields() sends the
    # type as llama-server's enum number (TRIGGER_TYPES)
    grammar_triggers: list[dict[str, str]] = field(default_factory=list)
    preserved_tokens: list[str] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    #: the model's reasoning format, when the template has one (None: the model does not reason)
    reasoning: Reasoning | None = None

    def completion_fields(self) -> dict[str, Any]:
        """The ``/completion`` body fields this plan sets."""
        body: dict[str, Any] = {"prompt": self.prompt}
        if self.grammar:
            body["grammar"] = self.grammar
            if self.grammar_lazy:
                body["grammar_lazy"] = True
                # llama-server reads a trigger's type as its enum number (common_grammar_trigger_type)
                body["grammar_triggers"] = [
                    {**t, "type": TRIGGER_TYPES.get(t["type"], t["type"])} for t in self.grammar_triggers
                ]
        if self.preserved_tokens:
            body["preserved_tokens"] = self.preserved_tokens
        if self.stop:
            body["stop"] = self.stop
        return body


class StyleError(ValueError):
    """The request cannot be expressed in this style (e.g. a schema the converter rejects).

    ``param`` names the offending request field, for the 400 the client gets.
    """

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class Style:
    """A tool-calling dialect: one module per dialect, registered with ``@register`` (``oaiproxy.dialects.registry``).

    A style owns how tools reach the model (the template's own ``tools`` support
    or a system prompt from ``templates/``), the grammar (tool schemas through
    ``oaiproxy.grammar``), lazy-grammar triggers and preserved tokens, stop words,
    and the incremental parser for its output.
    """

    #: the name used by ``--style`` and shown in logs
    name: ClassVar[str] = ""
    #: the templates that speak this dialect and its call texts, for the test tables and scripts
    samples: ClassVar[Samples | None] = None

    def __init__(self, template: ChatTemplate) -> None:
        self.template = template

    @classmethod
    def detect(cls, template_source: str) -> bool:
        """Whether a chat template's text says the model speaks this dialect."""
        return False

    def plan(self, conversation: Conversation) -> GenerationPlan:
        """Prompt, grammar, triggers, stops and a fresh parser for one request.

        Raises :class:`StyleError` for a request this style cannot serve.
        """
        raise NotImplementedError

    def prompt_plan(self, conversation: Conversation) -> GenerationPlan | None:
        """The per-request part of :meth:`plan` alone: its prompt and a fresh parser, nothing else set.

        A style implements it when everything else in its plan (grammar, lazy triggers, preserved
        tokens, stops, reasoning) depends on the conversation's tools and options but never on its
        messages; the engine's plan cache (:mod:`oaiproxy.dialects.plan_cache`) then reuses those
        parts for the next request with the same tools and options. None (the default): the style
        is planned whole on every request.
        """
        return None
