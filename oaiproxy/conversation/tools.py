"""Which tools a request puts in play: ``tools`` + ``tool_choice`` + ``parallel_tool_calls``
resolved into one :class:`ToolPlan` that every dialect builds its prompt and grammar from.

Nothing here checks: the rules are :mod:`oaiproxy.conversation.checks`'s, run once when an
API surface builds the conversation.
"""

from __future__ import annotations

from dataclasses import dataclass

from oaiproxy.conversation.model import Conversation, NamedToolChoice, ToolSpec

#: a grammar never admits more calls than this in one answer: small models loop otherwise
MAX_PARALLEL_CALLS = 8


@dataclass(frozen=True)
class ToolPlan:
    """The tools the model may call for one request and how it must use them.

    ``indexed`` pairs each tool with its position in the request's ``tools`` so an
    error can name ``tools[3].function.parameters``. ``mode`` is "none" (no tools
    in prompt or grammar), "auto" (free text or calls) or "required" (at least
    one call; a named ``tool_choice`` is "required" with a single tool).
    """

    indexed: tuple[tuple[int, ToolSpec], ...]
    prompt_tools: tuple[ToolSpec, ...]
    mode: str
    parallel: bool

    @property
    def names(self) -> list[str]:
        return [spec.name for _, spec in self.indexed]

    @property
    def max_calls(self) -> int:
        return MAX_PARALLEL_CALLS if self.parallel else 1


def plan_tools(conversation: Conversation) -> ToolPlan:
    """Resolve ``tools`` + ``tool_choice`` + ``parallel_tool_calls`` into a :class:`ToolPlan`.

    Resolution only: the conversation has passed
    :func:`oaiproxy.conversation.checks.check_conversation` (names unique, a named choice
    among the tools, "required" only with tools), so every case here is a valid one.
    """
    tools = list(conversation.tools)
    choice = conversation.tool_choice
    parallel = bool(conversation.parallel_tool_calls)
    if isinstance(choice, NamedToolChoice):
        i = next(i for i, spec in enumerate(tools) if spec.name == choice.name)
        return ToolPlan(((i, tools[i]),), (tools[i],), "required", parallel)
    if choice == "none" or not tools:
        return ToolPlan((), (), "none", parallel)
    return ToolPlan(tuple(enumerate(tools)), tuple(tools), choice, parallel)


__all__ = ["MAX_PARALLEL_CALLS", "ToolPlan", "plan_tools"]
