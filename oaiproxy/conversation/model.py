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

    @property
    def objects(self) -> Literal["open", "declared", "all"]:
        """How :func:`oaiproxy.grammar.enforced_schema` closes this tool's objects (grammar and check alike)."""
        return "all" if self.strict else "open" if self.extra_keys else "declared"


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
    ``tool_calls`` with ``function.arguments`` as a JSON string, ``tool_call_id``),
    already validated and with content parts flattened to text.
    """

    messages: list[dict[str, Any]]
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True
    response_format: ResponseFormat = field(default_factory=ResponseFormat)


@dataclass(frozen=True)
class ToolCall:
    """A parsed call; ``arguments`` is a JSON string, as OpenAI sends it."""

    id: str
    name: str
    arguments: str
