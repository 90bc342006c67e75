"""The agent loop: the model calls server tools, the proxy runs them and feeds the results back.

One round is one generation by the :class:`~oaiproxy.engine.Engine`. When its calls are all server
tools, they run side by side, their results join the conversation as ``tool`` messages, and the
next round starts; otherwise the round's answer is the client's. The loop ends when the model
answers (text, or calls to the client's own tools), or after ``max_iterations`` rounds with
calls, when one last round is generated without the server tools so that the model answers.

Calls to client tools in a round that also calls server tools: the server calls run (and are
reported as steps), and only the client's calls are returned, which is what the client asked
for; the model's next request from the client does not carry the server results (the state
issue's stored threads will).

Every step (the calls a round made, then their results) is reported as it happens: as
:class:`ToolCallsStep` and :class:`ToolResultsStep` events in a stream, and in
:attr:`LoopResult.steps` otherwise. Nothing here knows an API's wire shape.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from oaiproxy import metrics
from oaiproxy.conversation.model import Conversation, ToolCall, ToolChoice
from oaiproxy.dialects.base import ContentDelta, ParsedOutput
from oaiproxy.engine import CallDone, Engine, Finished, Result, Sampling, Started, Step, StreamEvent, TokenUsage
from oaiproxy.server_tools.base import ServerTool, ToolResult
from oaiproxy.server_tools.trim import fit_context

log = logging.getLogger("oaiproxy.server_tools")


@dataclass(frozen=True)
class ToolRun:
    """One server call and what it gave back."""

    call: ToolCall
    result: ToolResult
    #: seconds the call took
    duration: float


@dataclass(frozen=True)
class ToolCallsStep:
    """Round ``round`` (from 1) called these server tools; they run next."""

    round: int
    calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class ToolResultsStep:
    """The results of round ``round``'s server calls, in the order of the calls."""

    round: int
    runs: tuple[ToolRun, ...]


LoopStep = ToolCallsStep | ToolResultsStep


@dataclass
class LoopResult:
    """The final answer, the steps that led to it, and the usage of every round together."""

    result: Result
    steps: list[LoopStep] = field(default_factory=list)


def add_usage(total: TokenUsage, more: TokenUsage) -> TokenUsage:
    """Two rounds' usage as one: every round's prompt is counted, as the model read each one."""
    return TokenUsage(prompt_tokens=total.prompt_tokens + more.prompt_tokens,
                      completion_tokens=total.completion_tokens + more.completion_tokens,
                      cached_tokens=total.cached_tokens + more.cached_tokens,
                      reasoning_tokens=total.reasoning_tokens + more.reasoning_tokens)


def result_message(run: ToolRun) -> dict[str, Any]:
    """A run as the ``tool`` message the model reads next; a failure says so in its first word."""
    text = run.result.content
    return {"role": "tool", "tool_call_id": run.call.id, "name": run.call.name,
            "content": f"Error: {text}" if run.result.is_error else text}


def calls_message(content: str | None, calls: Sequence[ToolCall]) -> dict[str, Any]:
    """The assistant turn that made ``calls``, as the conversation's history holds it."""
    return {"role": "assistant", "content": content or "",
            "tool_calls": [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                           for c in calls]}


async def run_call(tool: ServerTool, call: ToolCall) -> ToolRun:
    """Run one call; a tool that raises (its contract says it should not) is a failed result, never a 500."""
    start = time.monotonic()
    try:
        result = await tool.run(json.loads(call.arguments))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a tool's bug is the model's error result, logged
        log.exception("server tool %s raised", call.name)
        result = ToolResult(f"{call.name} failed: {type(exc).__name__}: {exc}", is_error=True)
    run = ToolRun(call, result, time.monotonic() - start)
    metrics.note_server_tool(tool.source, run.duration, not result.is_error)
    return run


class ToolLoop:
    """Runs a conversation whose tools include server tools, for one request.

    ``conv`` must already offer the server tools (after the client's own); ``max_iterations``
    bounds the rounds that call tools.
    """

    def __init__(self, engine: Engine, tools: Sequence[ServerTool], *, max_iterations: int, trim: bool = False):
        if engine.stream_tool_calls != "whole":
            # a server call must be whole before it runs, and its text never reaches the client: the
            # loop's rounds hold every call back until it is validated (the client's too)
            engine = copy.copy(engine)
            engine.stream_tool_calls = "whole"
        self.engine = engine
        self.tools = {t.spec.name: t for t in tools}
        self.max_iterations = max_iterations
        #: drop the oldest turns of each round's history until the prompt fits (a brain's, :mod:`.trim`)
        self.trim = trim

    # ------------------------------------------------------------ rounds

    def _round(self, conv: Conversation, done: int, messages: list[dict[str, Any]]) -> Conversation:
        """The conversation of the next round, after ``done`` rounds of calls: the first keeps the
        request's tool choice; later ones let the model choose; past the limit the server tools go."""
        if done == 0:
            return conv
        choice: ToolChoice = "auto"
        tools = conv.tools
        if done >= self.max_iterations:
            tools = [t for t in conv.tools if t.name not in self.tools]
            choice = "auto" if tools else "none"
        elif conv.tool_choice == "none":
            choice = "none"
        return dataclasses.replace(conv, messages=messages, tools=tools, tool_choice=choice)

    async def _fitted(self, conv: Conversation, sampling: Sampling) -> Conversation:
        return await fit_context(self.engine, conv, sampling) if self.trim else conv

    def _split(self, calls: Sequence[ToolCall]) -> tuple[list[ToolCall], list[ToolCall]]:
        server = [c for c in calls if c.name in self.tools]
        return server, [c for c in calls if c.name not in self.tools]

    async def _run(self, calls: Sequence[ToolCall]) -> tuple[ToolRun, ...]:
        return tuple(await asyncio.gather(*(run_call(self.tools[c.name], c) for c in calls)))

    # ------------------------------------------------------------ whole answers

    async def complete(self, conv: Conversation, sampling: Sampling) -> LoopResult:
        messages = list(conv.messages)
        steps: list[LoopStep] = []
        usage = TokenUsage()
        done = 0
        #: what earlier rounds wrote beside their calls: part of the answer, as a stream shows it
        said = ""
        while True:
            round_conv = await self._fitted(self._round(conv, done, messages), sampling)
            result = (await self.engine.complete(round_conv, sampling))[0]
            usage = add_usage(usage, result.usage)
            server, client = self._split(result.parsed.tool_calls)
            if server and done < self.max_iterations:
                done += 1
                steps.append(ToolCallsStep(done, tuple(server)))
                runs = await self._run(server)
                steps.append(ToolResultsStep(done, runs))
                if not client and result.finish_reason == "tool_calls":
                    messages += [calls_message(result.parsed.content, server), *map(result_message, runs)]
                    said += result.parsed.content or ""
                    continue
            content = said + (result.parsed.content or "") if said else result.parsed.content
            result.parsed = ParsedOutput(content=content, tool_calls=client)
            if server and not client and result.finish_reason == "tool_calls":
                result.finish_reason = "stop"
            result.usage = usage
            return LoopResult(result, steps)

    # ------------------------------------------------------------ streams

    async def stream(self, conv: Conversation, sampling: Sampling) -> AsyncGenerator[StreamEvent | LoopStep, None]:
        """The engine's events of every round, as one answer: :class:`Started` once, content and
        reasoning as they come, the client's calls (numbered from 0), the steps between rounds, and
        one :class:`Finished` with the usage of every round."""
        messages = list(conv.messages)
        usage = TokenUsage()
        done = 0
        started = False
        while True:
            server_calls: list[ToolCall] = []
            client_calls = 0
            content: list[str] = []
            finished: Finished | None = None
            events = self.engine.stream(await self._fitted(self._round(conv, done, messages), sampling), sampling)
            try:
                async for event in events:
                    if isinstance(event, Started):
                        if not started:
                            started = True
                            yield event
                    elif isinstance(event, Step):
                        content += [ev.text for ev in event.events if isinstance(ev, ContentDelta)]
                        yield event
                    elif isinstance(event, CallDone):
                        if event.call.name in self.tools:
                            server_calls.append(event.call)
                        else:
                            yield CallDone(client_calls, event.call)
                            client_calls += 1
                    elif isinstance(event, Finished):
                        finished = event
                    else:
                        yield event
            finally:
                await events.aclose()
            assert finished is not None
            usage = add_usage(usage, finished.usage)
            if server_calls and done < self.max_iterations:
                done += 1
                yield ToolCallsStep(done, tuple(server_calls))
                runs = await self._run(server_calls)
                yield ToolResultsStep(done, runs)
                if not client_calls and finished.finish_reason == "tool_calls":
                    messages += [calls_message("".join(content), server_calls), *map(result_message, runs)]
                    continue
            reason = finished.finish_reason
            if server_calls and not client_calls and reason == "tool_calls":
                reason = "stop"
            yield Finished(reason, usage, finished.stop_sequence)
            return


__all__ = ["LoopResult", "LoopStep", "ToolCallsStep", "ToolLoop", "ToolResultsStep", "ToolRun", "add_usage",
           "calls_message", "result_message", "run_call"]
