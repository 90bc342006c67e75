"""Anthropic Messages on the neutral :class:`oaiproxy.engine.Engine`: request → conversation and
sampling (:mod:`.translate`), result → :class:`Message`, stream events → Anthropic's event sequence.

Nothing about prompts, grammars or parsing is decided here; only the Anthropic shape of the
answer is: a thinking model's reasoning as a ``thinking`` block (its ``signature`` "": there is
nothing to sign with), a text block, then a ``tool_use`` block per validated call with its
arguments as an object; and, streaming, ``message_start``, ``ping``, for each block ``content_block_start``, its
deltas and ``content_block_stop``, then ``message_delta`` (stop reason, usage) and ``message_stop``.
With ``--stream-tool-calls whole`` (the default) a call's block comes once the call is complete and
validated, its whole input in one ``input_json_delta``; ``incremental`` sends the arguments as they
are generated.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncGenerator

from oaiproxy.api.messages.protocol import (
    BlockDelta,
    ContentBlock,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    CountTokensRequest,
    CountTokensResponse,
    InputJSONDelta,
    Message,
    MessageDelta,
    MessageDeltaEvent,
    MessageDeltaUsage,
    MessagesRequest,
    MessageStartEvent,
    MessageStopEvent,
    PingEvent,
    StopReason,
    StreamEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
    Usage,
)
from oaiproxy.api.messages.translate import Translation, to_translation
from oaiproxy.conversation.model import ToolCall
from oaiproxy.dialects.base import ContentDelta, ToolCallDelta
from oaiproxy.engine import CallDone, Engine, Finished, ReasoningStep, Started, Step, TokenUsage
from oaiproxy.errors import APIError

#: the engine's finish reasons in Anthropic's terms ("stop" is end_turn or stop_sequence, see _stop_reason)
STOP_REASONS: dict[str, StopReason] = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def stop_reason(finish_reason: str, stop_sequence: str | None) -> StopReason:
    """Anthropic's ``stop_reason`` for an engine finish reason (and the client stop string that ended it)."""
    if finish_reason == "stop" and stop_sequence is not None:
        return "stop_sequence"
    return STOP_REASONS.get(finish_reason, "end_turn")


def usage(counts: TokenUsage) -> Usage:
    cached = min(counts.cached_tokens, counts.prompt_tokens)
    return Usage(input_tokens=counts.prompt_tokens - cached, output_tokens=counts.completion_tokens,
                 cache_read_input_tokens=cached)


def tool_use(call: ToolCall) -> ToolUseBlock:
    """A validated call as a ``tool_use`` block; its arguments are an object (every input_schema is one)."""
    arguments = json.loads(call.arguments) if call.arguments.strip() else {}
    return ToolUseBlock(id=call.id, name=call.name, input=arguments)


class MessagesEngine:
    """Serves Anthropic Messages for one model through its :class:`Engine` (the one Chat Completions uses)."""

    def __init__(self, core: Engine):
        self.core = core

    def translate(self, req: CountTokensRequest) -> Translation:
        return to_translation(req, tool_extra_keys=self.core.tool_extra_keys)

    async def _translate_async(self, req: CountTokensRequest) -> Translation:
        # a worker thread: checking a big schema may take a while, and the event loop keeps serving
        return await asyncio.to_thread(self.translate, req)

    # ------------------------------------------------------------ answers

    async def complete(self, req: MessagesRequest) -> Message:
        t = await self._translate_async(req)
        try:
            [result] = await self.core.complete(t.conversation, t.sampling)
        except APIError as exc:
            raise t.renamed(exc) from None
        content: list[ContentBlock] = []
        if result.reasoning:
            content.append(ThinkingBlock(thinking=result.reasoning))
        if result.parsed.content:
            content.append(TextBlock(text=result.parsed.content))
        content.extend(tool_use(call) for call in result.parsed.tool_calls)
        sequence = result.stop_sequence
        return Message(id=new_message_id(), content=content, model=self.core.model_id,
                       stop_reason=stop_reason(result.finish_reason, sequence), stop_sequence=sequence,
                       usage=usage(result.usage))

    async def stream(self, req: MessagesRequest) -> AsyncGenerator[StreamEvent, None]:
        """Anthropic's event sequence (see the module docstring); errors before the first event are HTTP errors."""
        t = await self._translate_async(req)
        blocks = _Blocks()
        events = self.core.stream(t.conversation, t.sampling)
        try:
            async for event in events:
                if isinstance(event, Started):
                    yield MessageStartEvent(message=Message(
                        id=new_message_id(), content=[], model=self.core.model_id, stop_reason=None,
                        usage=Usage(input_tokens=0, output_tokens=0)))
                    yield PingEvent()
                elif isinstance(event, ReasoningStep):
                    for out in blocks.thinking(event.text):
                        yield out
                elif isinstance(event, Step):
                    for ev in event.events:
                        for out in blocks.delta(ev):
                            yield out
                elif isinstance(event, CallDone):
                    for out in blocks.whole_call(event.call):
                        yield out
                elif isinstance(event, Finished):
                    for out in blocks.close():
                        yield out
                    counts = usage(event.usage)
                    sequence = event.stop_sequence
                    yield MessageDeltaEvent(
                        delta=MessageDelta(stop_reason=stop_reason(event.finish_reason, sequence),
                                           stop_sequence=sequence),
                        usage=MessageDeltaUsage(output_tokens=counts.output_tokens, input_tokens=counts.input_tokens,
                                                cache_creation_input_tokens=0,
                                                cache_read_input_tokens=counts.cache_read_input_tokens))
                    yield MessageStopEvent()
        except APIError as exc:
            raise t.renamed(exc) from None
        finally:
            await events.aclose()

    async def count_tokens(self, req: CountTokensRequest) -> CountTokensResponse:
        """The prompt's length in tokens, as the model would read it: the same plan (tools, template) as
        for ``POST /v1/messages``, tokenized by llama-server."""
        t = await self._translate_async(req)
        try:
            plan, _ = await self.core.plan_async(t.conversation, t.sampling)
        except APIError as exc:
            raise t.renamed(exc) from None
        # /completion adds BOS itself when the model asks for it, and the plan's prompt goes without it
        return CountTokensResponse(input_tokens=len(await self.core.client.tokenize(plan.prompt)))


class _Blocks:
    """The content blocks of one streamed answer: which one is open, and the index of the next."""

    def __init__(self) -> None:
        self.next = 0
        #: the open block's kind ("text" or "tool_use") and the engine's call index for a tool_use
        self.open: tuple[str, int] | None = None

    def _start(self, block: ContentBlock, kind: str, call: int = -1) -> list[StreamEvent]:
        out = self.close()
        self.open = (kind, call)
        out.append(ContentBlockStartEvent(index=self.next, content_block=block))
        return out

    def _delta(self, delta: BlockDelta) -> ContentBlockDeltaEvent:
        return ContentBlockDeltaEvent(index=self.next, delta=delta)

    def close(self) -> list[StreamEvent]:
        if self.open is None:
            return []
        self.open = None
        self.next += 1
        return [ContentBlockStopEvent(index=self.next - 1)]

    def thinking(self, text: str) -> list[StreamEvent]:
        """Reasoning text: the thinking block (the first of the answer) opened if need be, and a delta."""
        if not text:
            return []
        out: list[StreamEvent] = []
        if self.open is None or self.open[0] != "thinking":
            out = self._start(ThinkingBlock(thinking=""), "thinking")
        out.append(self._delta(ThinkingDelta(thinking=text)))
        return out

    def delta(self, ev: ContentDelta | ToolCallDelta) -> list[StreamEvent]:
        """A visible parser event: text, or (incremental calls) a piece of a call."""
        out: list[StreamEvent] = []
        if isinstance(ev, ContentDelta):
            if not ev.text:
                return out
            if self.open is None or self.open[0] != "text":
                out = self._start(TextBlock(text=""), "text")
            out.append(self._delta(TextDelta(text=ev.text)))
            return out
        if ev.id is not None or self.open != ("tool_use", ev.index):
            out = self._start(ToolUseBlock(id=ev.id or "", name=ev.name or "", input={}), "tool_use", ev.index)
        if ev.arguments:
            out.append(self._delta(InputJSONDelta(partial_json=ev.arguments)))
        return out

    def whole_call(self, call: ToolCall) -> list[StreamEvent]:
        """A complete, validated call (held back until generation ended): start, its whole input, stop."""
        out = self._start(ToolUseBlock(id=call.id, name=call.name, input={}), "tool_use")
        out.append(self._delta(InputJSONDelta(partial_json=json.dumps(tool_use(call).input, ensure_ascii=False))))
        out += self.close()
        return out


__all__ = ["STOP_REASONS", "MessagesEngine", "new_message_id", "stop_reason", "tool_use", "usage"]
