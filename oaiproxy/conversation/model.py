"""The conversation model: what every API surface translates a request into.

Chat Completions today, and the Anthropic Messages and Responses surfaces next, each reduce
their own request shape to one :class:`Conversation`; the dialects, the grammar and the
validator only ever see this. Nothing here knows about HTTP or about any one API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union


@dataclass(frozen=True)
class ToolSpec:
    """One function tool offered by the client."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    #: ``function.strict``: no keys beyond ``properties`` in any object, as OpenAI's strict mode
    strict: bool = False
    #: undeclared keys where the schema omits ``additionalProperties`` (``--tool-extra-keys``); by
    #: default an object that declares ``properties`` admits only those
    extra_keys: bool = False

    @classmethod
    def from_request(cls, name: str, description: str | None, parameters: dict[str, Any] | None,
                     strict: bool | None, *, extra_keys: bool) -> ToolSpec:
        """A tool as an API request sends it: no description, no parameters (a tool without arguments) or
        no ``strict`` take the defaults."""
        return cls(name=name, description=description or "", strict=bool(strict), extra_keys=extra_keys,
                   **({"parameters": parameters} if parameters is not None else {}))

    @property
    def objects(self) -> Literal["open", "declared", "all"]:
        """How :func:`oaiproxy.grammar.enforced_schema` closes this tool's objects (grammar and check alike)."""
        return "all" if self.strict else "open" if self.extra_keys else "declared"


#: the values of ``reasoning_effort`` (OpenAI's, "none" included)
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")

#: chat-template variables that switch a model's thinking on or off (Qwen3, GLM, DeepSeek, Kimi K3...)
THINKING_SWITCHES = ("enable_thinking", "thinking")

ToolChoice = Union[Literal["none", "auto", "required"], "NamedToolChoice"]


@dataclass(frozen=True)
class NamedToolChoice:
    """``tool_choice: {"type": "function", "function": {"name": ...}}``."""

    name: str


@dataclass(frozen=True)
class ResponseFormat:
    """``response_format``: ``type`` is "text", "json_object" or "json_schema"."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None  # for json_schema
    name: str | None = None
    strict: bool = False


@dataclass
class Conversation:
    """A chat request reduced to what a style needs.

    ``messages`` are OpenAI-shaped dicts (``role``, ``content`` as a string,
    ``tool_calls`` with ``function.arguments`` as a JSON string, ``tool_call_id``,
    ``reasoning_content`` of a past assistant turn), already validated and with content
    parts flattened to text.
    """

    messages: list[dict[str, Any]]
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    #: the client's reasoning effort (one of :data:`REASONING_EFFORTS`); None: not given
    reasoning_effort: str | None = None
    #: extra variables for the chat template's render (``chat_template_kwargs``), checked
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    #: False: the model must not reason (the engine sets it when the reasoning budget is 0)
    allow_reasoning: bool = True

    @property
    def thinking(self) -> bool:
        """Whether a thinking model reasons before this answer: not when the effort is "none",
        the template's own switch (``enable_thinking``/``thinking``) is turned off, or the budget is 0."""
        if not self.allow_reasoning or self.reasoning_effort == "none":
            return False
        return all(self.template_kwargs.get(name, True) is not False for name in THINKING_SWITCHES)


@dataclass(frozen=True)
class ToolCall:
    """A parsed call; ``arguments`` is a JSON string, as OpenAI sends it."""

    id: str
    name: str
    arguments: str
