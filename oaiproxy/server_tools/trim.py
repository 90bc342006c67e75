"""A context-aware trim of a brain's history: the prompt, the tools and the answer budget fit one slot.

A stored thread grows without bound, and ``history_depth`` counts messages, not tokens. Before each
round the prompt is rendered and counted by llama-server's own tokenizer; while it does not leave
room for the round's answer in a slot's context, the oldest turns are dropped (system messages stay,
and a cut never starts inside a round of calls). The fewest turns are dropped: the cut is found by
bisection, so a long thread costs a handful of tokenizations, not one per message.

When even the latest user message alone does not fit, nothing more can go: the conversation is sent
as it is and llama-server's refusal is the client's clear 400, never a 500.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from oaiproxy.conversation.model import Conversation
from oaiproxy.engine import Engine, Sampling
from oaiproxy.server_tools.brains import recent


async def prompt_tokens(engine: Engine, conv: Conversation, sampling: Sampling) -> int:
    """How many tokens the round's prompt takes, as llama-server counts them."""
    _, body = await engine.plan_async(conv, sampling)
    return len(await engine.client.tokenize(str(body["prompt"]), add_special=True))


def _cut(messages: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    """The system messages, then the latest ``keep`` others (never starting with a tool result)."""
    system = [m for m in messages if m.get("role") == "system"]
    rest = [m for m in messages if m.get("role") != "system"]
    return system + recent(rest, keep) if keep < len(rest) else list(messages)


async def fit_context(engine: Engine, conv: Conversation, sampling: Sampling) -> Conversation:
    """``conv`` with its oldest turns dropped until the prompt leaves room for the answer in one slot."""
    context = engine.client.context_per_slot
    if context is None:
        return conv
    room = context - (sampling.max_tokens or engine.default_max_tokens)

    async def fits(keep: int) -> bool:
        return await prompt_tokens(engine, dataclasses.replace(conv, messages=_cut(conv.messages, keep)),
                                   sampling) <= room

    others = sum(1 for m in conv.messages if m.get("role") != "system")
    if others <= 1 or await fits(others):
        return conv
    low, high = 1, others  # fits(high) is False; find the most messages that fit, at least the last one
    while high - low > 1:
        mid = (low + high) // 2
        if await fits(mid):
            low = mid
        else:
            high = mid
    return dataclasses.replace(conv, messages=_cut(conv.messages, low))


__all__ = ["fit_context", "prompt_tokens"]
