"""Which requests run the agent loop, and with what: a brain's model id, or ``server_tools`` names.

:func:`plan_loop` reads one :class:`~oaiproxy.server_tools.catalog.Snapshot` (taken once per request,
so a reload in the middle changes nothing for it) and gives a :class:`LoopPlan`, or None for a
request the loop has no part in. :meth:`LoopPlan.conversation` then adds the server tools after the
client's own, and the brain's system prompt and history depth.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from oaiproxy.conversation.model import Conversation, ToolSpec
from oaiproxy.engine import Engine, Sampling
from oaiproxy.errors import BadRequest
from oaiproxy.server_tools.base import ServerTool
from oaiproxy.server_tools.brains import brain_messages
from oaiproxy.server_tools.catalog import Snapshot
from oaiproxy.server_tools.config import Brain
from oaiproxy.server_tools.loop import ToolLoop

#: rounds of calls for a request that names ``server_tools`` without a brain
DEFAULT_MAX_ITERATIONS: int = Brain.model_fields["max_iterations"].default


@dataclass(frozen=True)
class LoopPlan:
    """The server tools one request may call, its round limit, and its brain (None: ``server_tools``)."""

    tools: list[ServerTool]
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    brain: Brain | None = None
    brain_name: str | None = None
    #: drop the oldest turns until each round's prompt fits the context (:mod:`.trim`): a brain's or a
    #: thread's history is the server's to cut; a client's own messages never are
    trim: bool = False

    def tool_loop(self, engine: Engine) -> ToolLoop:
        """The loop that runs this plan on ``engine``."""
        return ToolLoop(engine, self.tools, max_iterations=self.max_iterations, trim=self.trim)

    @property
    def specs(self) -> list[ToolSpec]:
        """The server tools as the conversation offers them, after the client's own."""
        return [t.spec for t in self.tools]

    def sampling(self, sampling: Sampling) -> Sampling:
        """``sampling`` with the brain's ``max_tokens`` when the request set none."""
        if self.brain is None or self.brain.max_tokens is None or sampling.max_tokens is not None:
            return sampling
        return dataclasses.replace(sampling, max_tokens=self.brain.max_tokens)

    def conversation(self, conv: Conversation, *, user: str | None, choice_given: bool) -> Conversation:
        """``conv`` (which offers :attr:`specs` already) with the brain's messages and first tool choice.

        ``choice_given``: the client set ``tool_choice``; otherwise a brain that says "required" makes
        the model call one of its tools before it answers.
        """
        if self.brain is None or self.brain_name is None:
            return conv
        messages = brain_messages(self.brain, self.brain_name, conv.messages, user=user)
        if not any(m.get("role") != "system" for m in messages):
            raise BadRequest(f"brain '{self.brain_name}' has nothing to answer: no message is left after its "
                             "history depth", param="messages")
        choice = conv.tool_choice
        if not choice_given and self.brain.tool_choice == "required" and self.tools:
            choice = "required"
        return dataclasses.replace(conv, messages=messages, tool_choice=choice)


def plan_loop(snapshot: Snapshot | None, model: str | None, refs: list[str] | None) -> LoopPlan | None:
    """The loop for a request to ``model`` naming ``refs`` (``server_tools``), or None: no loop.

    A brain's model id runs its tools (``refs`` narrow them); ``refs`` alone run those tools on the
    served model. Unknown names are a 400 naming ``server_tools[i]``.
    """
    brain = snapshot.brains.get(model) if snapshot is not None and model is not None else None
    if brain is None and not refs:
        return None
    if snapshot is None:
        raise BadRequest("'server_tools' needs a tools file; this server was started without --tools",
                         param="server_tools")
    for i, ref in enumerate(refs or []):
        if ref not in snapshot.tools and ref not in snapshot.sources:
            raise BadRequest(f"server_tools[{i}]: {ref!r} is neither a loaded source nor a server tool "
                             "(GET /v1/tools lists them)", param=f"server_tools[{i}]")
    if brain is None:
        return LoopPlan(tools=snapshot.tools_for(list(refs or [])))
    assert model is not None
    tools = snapshot.tools_for(brain.tools)
    if refs is not None:
        wanted = {t.spec.name for t in snapshot.tools_for(refs)}
        tools = [t for t in tools if t.spec.name in wanted]
    return LoopPlan(tools=tools, max_iterations=brain.max_iterations, brain=brain, brain_name=model, trim=True)


__all__ = ["DEFAULT_MAX_ITERATIONS", "LoopPlan", "plan_loop"]
