"""Chat Completions on the neutral :class:`oaiproxy.engine.Engine`: request → conversation and
sampling, result → :class:`ChatCompletion`, stream events → chunks in OpenAI's order.

Nothing about prompts, grammars or parsing is decided here; only the Chat Completions shape
of the answer is (the role chunk first, a chunk per visible delta carrying its tokens'
logprobs, whole calls after generation, the finish chunk, the optional usage chunk).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncGenerator
from typing import Any

from oaiproxy.api.chat.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    ResponseFunction,
    ResponseMessage,
    ResponseToolCall,
    StepResult,
    TokenLogprob,
    ToolStep,
    TopLogprob,
)
from oaiproxy.api.chat.translate import to_conversation
from oaiproxy.api.protocol import PromptTokensDetails, Usage
from oaiproxy.conversation.model import Conversation
from oaiproxy.dialects.base import ContentDelta, GenerationPlan, Style, ToolCallDelta
from oaiproxy.engine import CallDone, Engine, Finished, ReasoningStep, Sampling, Started, Step, TokenProb, TokenUsage
from oaiproxy.errors import BadRequest
from oaiproxy.runtime.upstream import LlamaServerClient
from oaiproxy.server_tools.loop import LoopStep, ToolCallsStep, ToolResultsStep
from oaiproxy.server_tools.plan import LoopPlan
from oaiproxy.templating.chat_template import ChatTemplate


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def to_sampling(req: ChatCompletionRequest) -> Sampling:
    """The request's sampling options in the engine's terms."""
    return Sampling(max_tokens=req.max_new_tokens(), temperature=req.temperature, top_p=req.top_p,
                    top_k=req.top_k, min_p=req.min_p, seed=req.seed, presence_penalty=req.presence_penalty,
                    frequency_penalty=req.frequency_penalty, logit_bias=req.logit_bias,
                    stop=tuple(req.stop_list()), logprobs=(req.top_logprobs or 0) if req.logprobs else None)


def _logprobs(items: tuple[TokenProb, ...], top: int | None) -> ChoiceLogprobs:
    content = [TokenLogprob(token=item.token, logprob=item.logprob, bytes=item.bytes,
                            top_logprobs=[TopLogprob(token=t.token, logprob=t.logprob, bytes=t.bytes)
                                          for t in item.top[: top or 0]])
               for item in items]
    return ChoiceLogprobs(content=content)


def _usage(usage: TokenUsage, completion_tokens: int | None = None) -> Usage:
    completion = usage.completion_tokens if completion_tokens is None else completion_tokens
    return Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=completion,
                 total_tokens=usage.prompt_tokens + completion,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens))


def tool_step(step: LoopStep) -> ToolStep:
    """A step of the agent loop in the extension's shape."""
    if isinstance(step, ToolCallsStep):
        return ToolStep(type="tool_calls", round=step.round, tool_calls=[
            ResponseToolCall(id=c.id, function=ResponseFunction(name=c.name, arguments=c.arguments))
            for c in step.calls])
    return ToolStep(type="tool_results", round=step.round, results=[
        StepResult(tool_call_id=r.call.id, name=r.call.name, content=r.result.content,
                   content_type=r.result.content_type, is_error=r.result.is_error,
                   duration_ms=round(r.duration * 1000))
        for r in step.runs])


class ChatEngine:
    """Serves Chat Completions for one model through its :class:`Engine`.

    Built around the model's :class:`Engine`, which other API surfaces can share.
    """

    def __init__(self, core: Engine):
        self.core = core

    # what callers read of the model this engine serves
    @property
    def style(self) -> Style:
        return self.core.style

    @property
    def template(self) -> ChatTemplate:
        return self.core.template

    @property
    def client(self) -> LlamaServerClient:
        return self.core.client

    @property
    def model_id(self) -> str:
        return self.core.model_id

    @property
    def strip_bos(self) -> bool:
        return self.core.strip_bos

    # ------------------------------------------------------------ planning

    def translate(self, req: ChatCompletionRequest, loop: LoopPlan | None = None) -> tuple[Conversation, Sampling]:
        """The request in the engine's terms; with a ``loop``, its server tools and brain added."""
        conv = to_conversation(req, tool_extra_keys=self.core.tool_extra_keys,
                               server_tools=loop.specs if loop is not None else ())
        if loop is not None:
            if req.n > 1:
                raise BadRequest("n > 1 is not supported with server tools", param="n")
            conv = loop.conversation(conv, user=req.user, choice_given=req.tool_choice is not None)
            return conv, loop.sampling(to_sampling(req))
        return conv, to_sampling(req)

    def plan(self, req: ChatCompletionRequest) -> tuple[Conversation, GenerationPlan, dict[str, Any]]:
        """The conversation, the style's plan and the exact ``/completion`` body for ``req``."""
        conv, sampling = self.translate(req)
        plan, body = self.core.plan(conv, sampling)
        return conv, plan, body

    async def _translate_async(self, req: ChatCompletionRequest,
                               loop: LoopPlan | None = None) -> tuple[Conversation, Sampling]:
        # a worker thread: checking a big schema may take a while, and the event loop keeps serving
        return await asyncio.to_thread(self.translate, req, loop)

    # ------------------------------------------------------------ answers

    async def complete(self, req: ChatCompletionRequest, loop: LoopPlan | None = None) -> ChatCompletion:
        """The answer; with a ``loop``, the one the model reached after the proxy ran its server tools."""
        conv, sampling = await self._translate_async(req, loop)
        steps: list[ToolStep] | None = None
        if loop is None:
            results = await self.core.complete(conv, sampling, req.n)
        else:
            run = await loop.tool_loop(self.core).complete(conv, sampling)
            results, steps = [run.result], [tool_step(step) for step in run.steps]
        choices = []
        for i, res in enumerate(results):
            calls = [ResponseToolCall(id=tc.id, function=ResponseFunction(name=tc.name, arguments=tc.arguments))
                     for tc in res.parsed.tool_calls]
            choices.append(Choice(
                index=i,
                message=ResponseMessage(content=res.parsed.content, tool_calls=calls or None,
                                        reasoning_content=res.reasoning),
                logprobs=_logprobs(res.logprobs, req.top_logprobs) if req.logprobs else None,
                finish_reason=res.finish_reason,  # type: ignore[arg-type]
            ))
        completion = sum(r.usage.completion_tokens for r in results)
        return ChatCompletion(id=new_completion_id(), created=int(time.time()), model=self._answering(loop),
                              choices=choices, usage=_usage(results[0].usage, completion), steps=steps)

    def _answering(self, loop: LoopPlan | None) -> str:
        """The model id an answer names: the brain's when one answered."""
        return loop.brain_name if loop is not None and loop.brain_name else self.core.model_id

    async def stream(self, req: ChatCompletionRequest,
                     loop: LoopPlan | None = None) -> AsyncGenerator[ChatCompletionChunk, None]:
        """Chunks in OpenAI's order: role, reasoning deltas (a thinking model's ``reasoning_content``),
        content/tool-call deltas, finish_reason, optional usage; with a ``loop``, a ``step`` chunk (no
        choices) for each step of the server tools as it happens."""
        if req.n > 1:
            raise BadRequest("n > 1 is not supported with stream: true", param="n")
        conv, sampling = await self._translate_async(req, loop)
        cid, created, model = new_completion_id(), int(time.time()), self._answering(loop)

        def chunk(delta: Delta, finish: str | None = None,
                  logprobs: ChoiceLogprobs | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(id=cid, created=created, model=model,
                                       choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish,  # type: ignore[arg-type]
                                                            logprobs=logprobs)])

        def delta_chunk(ev: ContentDelta | ToolCallDelta) -> ChatCompletionChunk:
            if isinstance(ev, ContentDelta):
                return chunk(Delta(content=ev.text))
            first = ev.id is not None
            return chunk(Delta(tool_calls=[DeltaToolCall(
                index=ev.index, id=ev.id, type="function" if first else None,
                function=DeltaFunction(name=ev.name, arguments=ev.arguments))]))

        events = (self.core.stream(conv, sampling) if loop is None
                  else loop.tool_loop(self.core).stream(conv, sampling))
        try:
            async for event in events:
                if isinstance(event, Started):
                    yield chunk(Delta(role="assistant", content=""))
                elif isinstance(event, ReasoningStep):
                    yield chunk(Delta(reasoning_content=event.text))
                elif isinstance(event, Step):
                    out = [delta_chunk(ev) for ev in event.events]
                    if event.logprobs and not out:  # tokens of a held-back call: their logprobs still reach the client
                        out = [chunk(Delta())]
                    for c in out:
                        if event.logprobs:
                            c.choices[0].logprobs = _logprobs(event.logprobs, req.top_logprobs)
                        yield c
                elif isinstance(event, CallDone):
                    yield chunk(Delta(tool_calls=[DeltaToolCall(
                        index=event.index, id=event.call.id, type="function",
                        function=DeltaFunction(name=event.call.name, arguments=event.call.arguments))]))
                elif isinstance(event, Finished):
                    yield chunk(Delta(), event.finish_reason)
                    if req.stream_options and req.stream_options.include_usage:
                        yield ChatCompletionChunk(id=cid, created=created, model=model, choices=[],
                                                  usage=_usage(event.usage))
                elif isinstance(event, ToolCallsStep | ToolResultsStep):
                    yield ChatCompletionChunk(id=cid, created=created, model=model, choices=[],
                                              step=tool_step(event))
        finally:
            await events.aclose()


__all__ = ["ChatEngine", "new_completion_id", "to_sampling"]
