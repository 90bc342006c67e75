"""Which tools a request puts in play: ``tools`` + ``tool_choice`` + ``parallel_tool_calls``
resolved into one :class:`ToolPlan` that every dialect builds its prompt and grammar from."""

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
    """Resolve ``tools`` + ``tool_choice`` + ``parallel_tool_calls`` into a :class:`ToolPlan`."""
    from oaiproxy.dialects.base import StyleError  # transitional: the checks move to the conversation

    tools = list(conversation.tools)
    seen: dict[str, int] = {}
    for i, spec in enumerate(tools):
        if not spec.name:
            raise StyleError(f"tools[{i}].function.name is empty", param=f"tools[{i}].function.name")
        if spec.name in seen:
            raise StyleError(
                f"tools[{i}].function.name {spec.name!r} repeats tools[{seen[spec.name]}]",
                param=f"tools[{i}].function.name",
            )
        seen[spec.name] = i
    choice = conversation.tool_choice
    parallel = bool(conversation.parallel_tool_calls)
    if isinstance(choice, NamedToolChoice):
        if choice.name not in seen:
            valid = ", ".join(repr(n) for n in seen) or "none were given"
            raise StyleError(
                f"tool_choice names function {choice.name!r}, which is not in tools ({valid})",
                param="tool_choice",
            )
        i = seen[choice.name]
        return ToolPlan(((i, tools[i]),), (tools[i],), "required", parallel)
    if choice not in ("none", "auto", "required"):
        raise StyleError(f"tool_choice {choice!r} is not 'none', 'auto', 'required' or a function", "tool_choice")
    if choice == "none" or not tools:
        if choice == "required":
            raise StyleError("tool_choice is 'required' but no tools were given", param="tool_choice")
        return ToolPlan((), (), "none", parallel)
    return ToolPlan(tuple(enumerate(tools)), tuple(tools), choice, parallel)


__all__ = ["MAX_PARALLEL_CALLS", "ToolPlan", "plan_tools"]
