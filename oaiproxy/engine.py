"""One generation, end to end, without HTTP and without any API's wire types.

conversation + sampling → style plan → llama-server ``/completion`` → parser → validated
result, or a stream of neutral events. Each API surface translates its own request onto
:class:`Engine` and the result back into its own shape (Chat Completions:
:mod:`oaiproxy.api.chat.serving`); everything about prompts, grammars, sampling and
parsing happens here or in the style.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from oaiproxy.conversation.model import Conversation, ToolCall
from oaiproxy.dialects.base import (
    ContentDelta,
    GenerationPlan,
    ParsedOutput,
    ParseEvent,
    Style,
    StyleError,
    ToolCallDelta,
)
from oaiproxy.dialects.streaming import partial_word_at_end
from oaiproxy.errors import BadRequest, InternalError
from oaiproxy.runtime.upstream import LlamaServerClient
from oaiproxy.settings import Settings
from oaiproxy.templating.chat_template import ChatTemplate
from oaiproxy.validation import validate_tool_calls

log = logging.getLogger("oaiproxy.engine")


# ---------------------------------------------------------------- sampling


@dataclass(frozen=True)
class Sampling:
    """How to sample one answer, in no API's terms (``None``: llama-server's own default)."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    #: token id (as text, as the APIs send it) -> bias; -100 bans the token
    logit_bias: dict[str, float] | None = None
    #: the client's stop strings
    stop: tuple[str, ...] = ()
    #: None: no logprobs; else how many alternatives to report per token (0: the token's own only)
    logprobs: int | None = None


def common_sampling_fields(source: Any) -> dict[str, Any]:
    """Sampling options every surface shares, in llama-server ``/completion`` terms.

    ``source`` is a :class:`Sampling` or any request with the same attribute names (the legacy
    completions request is one).
    """
    body: dict[str, Any] = {}
    for name in ("temperature", "top_p", "top_k", "min_p", "seed", "presence_penalty", "frequency_penalty"):
        value = getattr(source, name)
        if value is not None:
            body[name] = value
    if source.logit_bias:
        bias = []
        for token, value in source.logit_bias.items():
            try:
                bias.append([int(token), False if value <= -100 else value])  # -100 bans the token
            except ValueError:
                raise BadRequest(f"logit_bias keys are token ids; got {token!r}", param="logit_bias") from None
        body["logit_bias"] = bias
    return body


def sampling_fields(sampling: Sampling, default_max_tokens: int) -> dict[str, Any]:
    """``sampling`` in llama-server ``/completion`` terms (stops apart: the plan's come first)."""
    body: dict[str, Any] = {"n_predict": sampling.max_tokens or default_max_tokens, "cache_prompt": True}
    body.update(common_sampling_fields(sampling))
    if sampling.logprobs is not None:
        body["n_probs"] = max(1, sampling.logprobs)
    return body


# ---------------------------------------------------------------- results and events


@dataclass(frozen=True)
class TokenProb:
    """One generated token's log probability, with its most likely alternatives."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    top: tuple[TokenProb, ...] = ()


def token_probs(items: list[dict[str, Any]] | None) -> tuple[TokenProb, ...]:
    """llama-server's ``completion_probabilities`` as :class:`TokenProb`."""
    return tuple(
        TokenProb(token=item.get("token", ""), logprob=item.get("logprob", 0.0), bytes=item.get("bytes"),
                  top=tuple(TokenProb(token=t.get("token", ""), logprob=t.get("logprob", 0.0), bytes=t.get("bytes"))
                            for t in (item.get("top_logprobs") or [])))
        for item in items or []
    )


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: prompt tokens llama-server reused from its cache
    cached_tokens: int = 0


@dataclass
class Result:
    """One whole answer: content and validated calls, why it ended, what it cost."""

    parsed: ParsedOutput
    finish_reason: str
    usage: TokenUsage = field(default_factory=TokenUsage)
    logprobs: tuple[TokenProb, ...] = ()


@dataclass(frozen=True)
class Started:
    """llama-server accepted the request and is generating: from here on, failures come mid-stream."""


@dataclass(frozen=True)
class Step:
    """What one llama-server event added: content (and, when streaming calls incrementally, call
    deltas) the client may see now, and the logprobs of its tokens when they were asked for.

    ``events`` may be empty while a call is held back; ``logprobs`` then still belong to the client.
    """

    events: tuple[ParseEvent, ...]
    logprobs: tuple[TokenProb, ...] | None = None


@dataclass(frozen=True)
class CallDone:
    """A complete, validated call, sent whole (``stream_tool_calls`` "whole", after generation)."""

    index: int
    call: ToolCall


@dataclass(frozen=True)
class Finished:
    """The end of the answer: why it ended and what it cost."""

    finish_reason: str
    usage: TokenUsage


StreamEvent = Started | Step | CallDone | Finished


# ---------------------------------------------------------------- helpers


def strip_partial_stop(text: str, stops: list[str]) -> str:
    """Drop a tail of ``text`` that is the start of a stop string.

    Streaming, llama-server holds such a tail back and drops it when the token
    limit ends generation; the non-streamed answer keeps it. Dropping it here
    makes both answers the same text.
    """
    cut = partial_word_at_end(text, stops)
    return text[: len(text) - cut] if cut else text


def _cut_short(data: dict[str, Any]) -> bool:
    """Whether llama-server stopped at the token or context limit rather than at an end."""
    return data.get("stop_type") == "limit" or bool(data.get("truncated"))


def _cut_by(data: dict[str, Any], client_stops: tuple[str, ...]) -> str | None:
    """How generation was cut short, if it was: "length" (token or context limit), "stop" (a client's
    stop string, which may match inside a call), or None when the model ended its answer itself.

    The style's own stop words end an answer; a client's stop string is text that may
    also occur inside a call's arguments, so a call it ends is cut, as one the limit ends.
    """
    if _cut_short(data):
        return "length"
    if data.get("stop_type") == "word" and data.get("stopping_word") in client_stops:
        return "stop"
    return None


def _usage(data: dict[str, Any]) -> TokenUsage:
    # llama-server's `tokens_cached` counts generated tokens too; `timings.cache_n` is the prompt part reused.
    return TokenUsage(prompt_tokens=int(data.get("tokens_evaluated") or 0),
                      completion_tokens=int(data.get("tokens_predicted") or 0),
                      cached_tokens=int((data.get("timings") or {}).get("cache_n") or 0))


# ---------------------------------------------------------------- the engine


class Engine:
    """Generates answers for one model: its template, its style, its llama-server."""

    def __init__(self, *, template: ChatTemplate, style: type[Style], client: LlamaServerClient,
                 model_id: str, default_max_tokens: int, stream_tool_calls: str, tool_extra_keys: bool,
                 extra_stops: list[str] | None = None, strip_bos: bool = True):
        self.template = template
        self.style = style(template)
        self.client = client
        self.model_id = model_id
        self.default_max_tokens = default_max_tokens
        self.extra_stops = list(extra_stops or [])
        # /completion adds BOS itself when the model asks for it; a template's own
        # {{ bos_token }} would make it two.
        self.strip_bos = strip_bos
        #: "whole": a streamed call is sent once complete and validated; "incremental": as generated
        self.stream_tool_calls = stream_tool_calls
        #: whether tool arguments may carry keys their schema does not declare (where it allows them);
        #: read by the surfaces when they build the conversation
        self.tool_extra_keys = tool_extra_keys

    @classmethod
    def from_settings(cls, settings: Settings, *, template: ChatTemplate, style: type[Style],
                      client: LlamaServerClient, model_id: str, extra_stops: list[str] | None = None,
                      strip_bos: bool = True) -> Engine:
        """The engine for one model, its generation options read from ``settings`` (declared there once)."""
        return cls(template=template, style=style, client=client, model_id=model_id,
                   default_max_tokens=settings.default_max_tokens, stream_tool_calls=settings.stream_tool_calls,
                   tool_extra_keys=settings.tool_extra_keys, extra_stops=extra_stops, strip_bos=strip_bos)

    # ------------------------------------------------------------ planning

    def plan(self, conv: Conversation, sampling: Sampling) -> tuple[GenerationPlan, dict[str, Any]]:
        """The style's plan for a checked conversation and the ``/completion`` body that carries it."""
        try:
            plan = self.style.plan(conv)
        except StyleError as exc:
            raise BadRequest(str(exc), param=exc.param) from None
        bos = self.template.bos_token
        if self.strip_bos and bos and plan.prompt.startswith(bos):
            plan.prompt = plan.prompt[len(bos):]
        body = plan.completion_fields()
        body.update(sampling_fields(sampling, self.default_max_tokens))
        stops = list(dict.fromkeys([*plan.stop, *self.extra_stops, *sampling.stop]))
        if stops:
            body["stop"] = stops
        return plan, body

    async def plan_async(self, conv: Conversation, sampling: Sampling) -> tuple[GenerationPlan, dict[str, Any]]:
        """:meth:`plan` in a worker thread: a template render or a big schema may take
        up to their time limits, and the event loop keeps serving meanwhile."""
        return await asyncio.to_thread(self.plan, conv, sampling)

    def _settle(self, conv: Conversation, parsed: ParsedOutput, cut: str | None) -> tuple[ParsedOutput, str]:
        """Check every call against the request's tools and choose the finish reason.

        A generation cut short (by the token limit, or by a client's stop string,
        see :func:`_cut_by`) may end inside a call: the complete calls are kept,
        the cut one is dropped, and the finish reason says ``length`` (or ``stop``).
        Any other invalid call is a bug in a grammar or parser: it is logged loudly
        and becomes an error, never a bad call passed to the client.
        """
        if cut is not None:
            kept = [c for c in parsed.tool_calls if not validate_tool_calls([c], conv.tools)]
            if len(kept) < len(parsed.tool_calls):
                log.info("dropped %d tool call(s) cut by %s", len(parsed.tool_calls) - len(kept),
                         "the token limit" if cut == "length" else "a stop string")
            finish = "tool_calls" if cut == "stop" and kept else cut
            return ParsedOutput(content=parsed.content, tool_calls=kept), finish
        problems = validate_tool_calls(parsed.tool_calls, conv.tools)
        if problems:
            log.error("BUG: invalid tool call produced by style %s: %s; output=%r",
                      self.style.name, problems, parsed)
            raise InternalError("the model produced a tool call that failed validation: " + "; ".join(problems),
                                code="invalid_tool_call")
        return parsed, "tool_calls" if parsed.tool_calls else "stop"

    # ------------------------------------------------------------ whole answers

    async def _generate(self, conv: Conversation, plan: GenerationPlan, body: dict[str, Any],
                        sampling: Sampling) -> Result:
        data = await self.client.completion(body)
        text = data.get("content", "")
        if _cut_short(data):
            text = strip_partial_stop(text, body.get("stop") or [])
        plan.parser.feed(text)
        plan.parser.finish()
        parsed, finish = self._settle(conv, plan.parser.result(), _cut_by(data, sampling.stop))
        return Result(parsed=parsed, finish_reason=finish, usage=_usage(data),
                      logprobs=token_probs(data.get("completion_probabilities")))

    async def complete(self, conv: Conversation, sampling: Sampling, n: int = 1) -> list[Result]:
        """``n`` answers to one conversation, generated side by side (each its own seed when one is given)."""
        plans = [await self.plan_async(conv, sampling) for _ in range(n)]
        if n > 1 and sampling.seed is not None:
            for i, (_, body) in enumerate(plans):
                body["seed"] = sampling.seed + i
        # a TaskGroup: when one choice fails, the others are cancelled and stop generating
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._generate(conv, p, b, sampling)) for p, b in plans]
        except BaseExceptionGroup as group_error:
            raise group_error.exceptions[0] from None  # the client gets the first choice's error as it is
        return [t.result() for t in tasks]

    # ------------------------------------------------------------ streaming

    async def stream(self, conv: Conversation, sampling: Sampling) -> AsyncGenerator[StreamEvent, None]:
        """:class:`Started`, then a :class:`Step` per llama-server event, the :class:`CallDone` calls
        when they are held back until validated, and :class:`Finished`.

        llama-server's first event is awaited before :class:`Started`, so that an upstream
        refusal (e.g. a prompt over the context) still comes before any answer: a plain HTTP error.
        """
        plan, body = await self.plan_async(conv, sampling)
        upstream = self.client.completion_stream(body)
        try:
            first_event = await anext(upstream)
        except StopAsyncIteration:
            first_event = {"content": "", "stop": True}
        try:
            yield Started()
            last: dict[str, Any] = {}

            # "whole" (the default): calls are held back and sent once generation is over and each
            # has been validated, so a client never holds a cut or invalid call. "incremental":
            # argument text is sent as it is generated, as OpenAI streams it.
            incremental = self.stream_tool_calls == "incremental"

            def visible(events: list[ParseEvent]) -> tuple[ParseEvent, ...]:
                return tuple(ev for ev in events if (isinstance(ev, ContentDelta) and ev.text)
                             or (isinstance(ev, ToolCallDelta) and incremental))

            async def events() -> AsyncIterator[dict[str, Any]]:
                yield first_event
                async for ev in upstream:
                    yield ev

            async for event in events():
                last = event
                shown = visible(plan.parser.feed(event.get("content", "")))
                probs = event.get("completion_probabilities") if sampling.logprobs is not None else None
                yield Step(shown, token_probs(probs) if probs else None)
            yield Step(visible(plan.parser.finish()))
            settled, finish = self._settle(conv, plan.parser.result(), _cut_by(last, sampling.stop))
            if not incremental:
                for i, call in enumerate(settled.tool_calls):
                    yield CallDone(i, call)
            yield Finished(finish, _usage(last))
        finally:
            await upstream.aclose()


__all__ = ["CallDone", "Engine", "Finished", "Result", "Sampling", "Started", "Step", "StreamEvent", "TokenProb",
           "TokenUsage", "common_sampling_fields", "sampling_fields", "strip_partial_stop", "token_probs"]
