"""One generation, end to end, without HTTP and without any API's wire types.

conversation + sampling → style plan → llama-server ``/completion`` → parser → validated
result, or a stream of neutral events. A thinking model's plan names its reasoning markers:
the engine then generates in two phases, the reasoning free (no grammar, up to the closer
or the reasoning budget) and the answer under the plan's grammar, after the closed
reasoning (docs/reasoning.md). Each API surface translates its own request onto
:class:`Engine` and the result back into its own shape (Chat Completions:
:mod:`oaiproxy.api.chat.serving`); everything about prompts, grammars, sampling and
parsing happens here or in the style.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from oaiproxy import metrics
from oaiproxy.conversation.model import Conversation, ToolCall
from oaiproxy.dialects.base import (
    ContentDelta,
    GenerationPlan,
    ParsedOutput,
    ParseEvent,
    Reasoning,
    Style,
    StyleError,
)
from oaiproxy.dialects.plan_cache import PlanCache
from oaiproxy.dialects.reasoning import reasoning_prompt
from oaiproxy.dialects.streaming import partial_word_at_end
from oaiproxy.errors import BadRequest, InternalError
from oaiproxy.runtime.upstream import LlamaServerClient
from oaiproxy.settings import REASONING_EFFORT_BUDGETS, Settings
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
    #: of the completion tokens, those of the reasoning phase
    reasoning_tokens: int = 0

    def then(self, answer: TokenUsage) -> TokenUsage:
        """This reasoning phase's usage followed by the answer phase's: the prompt counted once."""
        return TokenUsage(prompt_tokens=self.prompt_tokens,
                          completion_tokens=self.completion_tokens + answer.completion_tokens,
                          cached_tokens=self.cached_tokens, reasoning_tokens=self.completion_tokens)


@dataclass
class Result:
    """One whole answer: content and validated calls, why it ended, what it cost."""

    parsed: ParsedOutput
    finish_reason: str
    usage: TokenUsage = field(default_factory=TokenUsage)
    logprobs: tuple[TokenProb, ...] = ()
    #: a thinking model's reasoning, apart from the content (None: it did not reason)
    reasoning: str | None = None
    #: the client's stop string that ended generation, when one did (Anthropic's ``stop_sequence``)
    stop_sequence: str | None = None


@dataclass(frozen=True)
class Started:
    """llama-server accepted the request and is generating: from here on, failures come mid-stream."""


@dataclass(frozen=True)
class ReasoningStep:
    """Reasoning text the model just wrote, before its answer (never part of the content)."""

    text: str


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
    #: as :attr:`Result.stop_sequence`
    stop_sequence: str | None = None


StreamEvent = Started | ReasoningStep | Step | CallDone | Finished


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
    if client_stop(data, client_stops) is not None:
        return "stop"
    return None


def client_stop(data: dict[str, Any], client_stops: tuple[str, ...]) -> str | None:
    """The client's stop string llama-server stopped on, if it stopped on one."""
    word = data.get("stopping_word")
    return word if data.get("stop_type") == "word" and isinstance(word, str) and word in client_stops else None


@dataclass(frozen=True)
class ReasoningRun:
    """The reasoning phase of one request: the markers, and how many tokens it may take."""

    reasoning: Reasoning
    #: n_predict of the phase: the reasoning budget or, when smaller, max_tokens
    limit: int
    #: the request's max_tokens, shared by both phases
    max_tokens: int

    def ran_out_of_tokens(self, data: dict[str, Any]) -> bool:
        """Whether the phase ended at max_tokens (or the context) rather than at the budget: no answer then."""
        return bool(data.get("truncated")) or (_cut_short(data) and self.limit >= self.max_tokens)


class ReasoningText:
    """The reasoning as the client sees it, fed piece by piece: whitespace around it trimmed
    (the newline after ``<think>``, the one before ``</think>``), the same split or whole."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._pending = ""
        self._started = False

    def feed(self, chunk: str) -> str:
        self._parts.append(chunk)
        text = self._pending + chunk
        if not self._started:
            text = text.lstrip()
            if not text:
                self._pending = ""
                return ""
            self._started = True
        shown = text.rstrip()
        self._pending = text[len(shown):]
        return shown

    @property
    def raw(self) -> str:
        return "".join(self._parts)

    @property
    def text(self) -> str:
        return self.raw.strip()


def _without_leading_space(parsed: ParsedOutput) -> ParsedOutput:
    """The answer after a reasoning section, without the blank lines the model writes after the closer."""
    content = parsed.content.lstrip() if parsed.content else parsed.content
    return ParsedOutput(content=content or None, tool_calls=parsed.tool_calls)


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
                 extra_stops: list[str] | None = None, strip_bos: bool = True, reasoning_budget: int | None = None):
        self.template = template
        #: most reasoning tokens before the answer (None: up to max_tokens; 0: no reasoning)
        self.reasoning_budget = reasoning_budget
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
        #: the grammar, triggers and stops of the tool lists planned lately (:mod:`oaiproxy.dialects.plan_cache`)
        self.plan_cache = PlanCache()

    @classmethod
    def from_settings(cls, settings: Settings, *, template: ChatTemplate, style: type[Style],
                      client: LlamaServerClient, model_id: str, extra_stops: list[str] | None = None,
                      strip_bos: bool = True) -> Engine:
        """The engine for one model, its generation options read from ``settings`` (declared there once)."""
        return cls(template=template, style=style, client=client, model_id=model_id,
                   default_max_tokens=settings.default_max_tokens, stream_tool_calls=settings.stream_tool_calls,
                   tool_extra_keys=settings.tool_extra_keys, extra_stops=extra_stops, strip_bos=strip_bos,
                   reasoning_budget=settings.reasoning_budget)

    # ------------------------------------------------------------ planning

    def budget(self, conv: Conversation) -> int | None:
        """The request's reasoning budget in tokens: the smaller of ``--reasoning-budget`` and what
        its ``reasoning_effort`` asks for (:data:`~oaiproxy.settings.REASONING_EFFORT_BUDGETS`)."""
        effort = REASONING_EFFORT_BUDGETS.get(conv.reasoning_effort) if conv.reasoning_effort else None
        bounds = [b for b in (self.reasoning_budget, effort) if b is not None]
        return min(bounds) if bounds else None

    def plan(self, conv: Conversation, sampling: Sampling) -> tuple[GenerationPlan, dict[str, Any]]:
        """The style's plan for a checked conversation and the ``/completion`` body that carries it
        (for a thinking model, the body of the answer phase before the reasoning is added)."""
        plan, body, _ = self.prepare(conv, sampling)
        return plan, body

    def prepare(self, conv: Conversation, sampling: Sampling
                ) -> tuple[GenerationPlan, dict[str, Any], ReasoningRun | None]:
        """:meth:`plan`, and the reasoning phase to run first when the model reasons.

        A thinking template's prompt is opened for the reasoning (thinking on) or closed at once
        (thinking off: ``reasoning_effort`` "none", a template switch turned off, a budget of 0);
        see :func:`oaiproxy.dialects.reasoning.reasoning_prompt`.
        """
        budget = self.budget(conv)
        if budget == 0 and conv.allow_reasoning:
            conv = dataclasses.replace(conv, allow_reasoning=False)
        try:
            plan = self.plan_cache.plan(self.style, conv)
        except StyleError as exc:
            raise BadRequest(str(exc), param=exc.param) from None
        bos = self.template.bos_token
        if self.strip_bos and bos and plan.prompt.startswith(bos):
            plan.prompt = plan.prompt[len(bos):]
        run = None
        if plan.reasoning is not None:
            plan.prompt, reasons = reasoning_prompt(plan.prompt, plan.reasoning, conv.thinking)
            if reasons:
                max_tokens = sampling.max_tokens or self.default_max_tokens
                run = ReasoningRun(plan.reasoning, min(max_tokens, budget) if budget is not None else max_tokens,
                                   max_tokens)
        metrics.note_generation(self.model_id, self.style.name,
                                "none" if not plan.grammar else "lazy" if plan.grammar_lazy else "eager")
        body = plan.completion_fields()
        body.update(sampling_fields(sampling, self.default_max_tokens))
        stops = list(dict.fromkeys([*plan.stop, *self.extra_stops, *sampling.stop]))
        if stops:
            body["stop"] = stops
        return plan, body, run

    async def plan_async(self, conv: Conversation, sampling: Sampling) -> tuple[GenerationPlan, dict[str, Any]]:
        """:meth:`plan` in a worker thread: a template render or a big schema may take
        up to their time limits, and the event loop keeps serving meanwhile."""
        return await asyncio.to_thread(self.plan, conv, sampling)

    async def prepare_async(self, conv: Conversation, sampling: Sampling
                            ) -> tuple[GenerationPlan, dict[str, Any], ReasoningRun | None]:
        """:meth:`prepare` in a worker thread (see :meth:`plan_async`)."""
        return await asyncio.to_thread(self.prepare, conv, sampling)

    # ------------------------------------------------------------ the reasoning phase

    def _reasoning_body(self, plan: GenerationPlan, body: dict[str, Any], run: ReasoningRun) -> dict[str, Any]:
        """The ``/completion`` body of the reasoning: free text (no grammar, no logprobs) up to the closer.

        The client's stop strings apply to the answer only; the markers are preserved tokens,
        so llama-server writes a special-token closer as text and stops on it.
        """
        first = {k: v for k, v in body.items()
                 if k not in ("grammar", "grammar_lazy", "grammar_triggers", "n_probs", "stop", "preserved_tokens")}
        first["n_predict"] = run.limit
        first["stop"] = list(dict.fromkeys([run.reasoning.closer, *plan.stop, *self.extra_stops]))
        first["preserved_tokens"] = list(dict.fromkeys(
            [*plan.preserved_tokens, run.reasoning.opener.strip(), run.reasoning.closer.strip()]))
        return first

    @staticmethod
    def _answer_body(body: dict[str, Any], run: ReasoningRun, raw: str, used: int) -> dict[str, Any]:
        """The answer phase after ``raw`` reasoning: the reasoning closed, the tokens left of max_tokens."""
        reasoning = run.reasoning
        return {**body, "prompt": body["prompt"] + raw + reasoning.closer + reasoning.resume,
                "n_predict": max(1, run.max_tokens - used)}

    def _settle(self, conv: Conversation, parsed: ParsedOutput, cut: str | None,
                plan: GenerationPlan | None = None) -> tuple[ParsedOutput, str]:
        """Check every call against the request's tools and choose the finish reason.

        A generation cut short (by the token limit, or by a client's stop string,
        see :func:`_cut_by`) may end inside a call: the complete calls are kept,
        the cut one is dropped, and the finish reason says ``length`` (or ``stop``).
        Any other invalid call is a bug in a grammar or parser: it is logged loudly
        and becomes an error, never a bad call passed to the client. What became of the
        calls is counted (:func:`oaiproxy.metrics.note_tool_calls`).
        """
        lazy = plan is not None and plan.grammar_lazy

        def count(**outcomes: int) -> None:
            metrics.note_tool_calls(self.model_id, self.style.name, lazy=lazy, **outcomes)

        if cut is not None:
            kept = [c for c in parsed.tool_calls if not validate_tool_calls([c], conv.tools)]
            count(returned=len(kept), cut=len(parsed.tool_calls) - len(kept))
            if len(kept) < len(parsed.tool_calls):
                log.info("dropped %d tool call(s) cut by %s", len(parsed.tool_calls) - len(kept),
                         "the token limit" if cut == "length" else "a stop string")
            finish = "tool_calls" if cut == "stop" and kept else cut
            return ParsedOutput(content=parsed.content, tool_calls=kept), finish
        problems = validate_tool_calls(parsed.tool_calls, conv.tools)
        if problems:
            count(refused=sum(1 for c in parsed.tool_calls if validate_tool_calls([c], conv.tools)))
            log.error("BUG: invalid tool call produced by style %s: %s; output=%r",
                      self.style.name, problems, parsed)
            raise InternalError("the model produced a tool call that failed validation: " + "; ".join(problems),
                                code="invalid_tool_call")
        count(returned=len(parsed.tool_calls))
        return parsed, "tool_calls" if parsed.tool_calls else "stop"

    # ------------------------------------------------------------ whole answers

    async def _generate(self, conv: Conversation, plan: GenerationPlan, body: dict[str, Any],
                        sampling: Sampling, run: ReasoningRun | None = None) -> Result:
        reasoning: str | None = None
        before: TokenUsage | None = None
        if run is not None:
            first = self._reasoning_body(plan, body, run)
            data = await self.client.completion(first)
            raw = data.get("content", "")
            if _cut_short(data):
                raw = strip_partial_stop(raw, first["stop"])
            reasoning, before = raw.strip(), _usage(data)
            if run.ran_out_of_tokens(data):
                return Result(parsed=ParsedOutput(content=None, tool_calls=[]), finish_reason="length",
                              usage=before.then(TokenUsage()), reasoning=reasoning)
            body = self._answer_body(body, run, raw, before.completion_tokens)
        data = await self.client.completion(body)
        text = data.get("content", "")
        if _cut_short(data):
            text = strip_partial_stop(text, body.get("stop") or [])
        plan.parser.feed(text)
        plan.parser.finish()
        parsed = plan.parser.result()
        if plan.reasoning is not None:
            parsed = _without_leading_space(parsed)
        parsed, finish = self._settle(conv, parsed, _cut_by(data, sampling.stop), plan)
        usage = _usage(data) if before is None else before.then(_usage(data))
        return Result(parsed=parsed, finish_reason=finish, usage=usage,
                      logprobs=token_probs(data.get("completion_probabilities")), reasoning=reasoning,
                      stop_sequence=client_stop(data, sampling.stop))

    async def complete(self, conv: Conversation, sampling: Sampling, n: int = 1) -> list[Result]:
        """``n`` answers to one conversation, generated side by side (each its own seed when one is given)."""
        plans = [await self.prepare_async(conv, sampling) for _ in range(n)]
        if n > 1 and sampling.seed is not None:
            for i, (_, body, _) in enumerate(plans):
                body["seed"] = sampling.seed + i
        # a TaskGroup: when one choice fails, the others are cancelled and stop generating
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._generate(conv, p, b, sampling, r)) for p, b, r in plans]
        except BaseExceptionGroup as group_error:
            raise group_error.exceptions[0] from None  # the client gets the first choice's error as it is
        return [t.result() for t in tasks]

    # ------------------------------------------------------------ streaming

    async def stream(self, conv: Conversation, sampling: Sampling) -> AsyncGenerator[StreamEvent, None]:
        """:class:`Started`, then a :class:`ReasoningStep` per piece of a thinking model's reasoning,
        a :class:`Step` per llama-server event of the answer, the :class:`CallDone` calls when they
        are held back until validated, and :class:`Finished`.

        llama-server's first event is awaited before :class:`Started`, so that an upstream
        refusal (e.g. a prompt over the context) still comes before any answer: a plain HTTP error.
        """
        plan, body, run = await self.prepare_async(conv, sampling)
        before: TokenUsage | None = None
        if run is not None:
            upstream = self.client.completion_stream(self._reasoning_body(plan, body, run))
            first_event = await _first_event(upstream)
            text = ReasoningText()
            last: dict[str, Any] = {}
            try:
                yield Started()
                async for event in _chained(first_event, upstream):
                    last = event
                    shown = text.feed(event.get("content", ""))
                    if shown:
                        yield ReasoningStep(shown)
            finally:
                await upstream.aclose()
            before = _usage(last)
            if run.ran_out_of_tokens(last):
                yield Finished("length", before.then(TokenUsage()))
                return
            body = self._answer_body(body, run, text.raw, before.completion_tokens)
        async for out in self._stream_answer(conv, plan, body, sampling, before):
            yield out

    async def _stream_answer(self, conv: Conversation, plan: GenerationPlan, body: dict[str, Any],
                             sampling: Sampling, before: TokenUsage | None) -> AsyncGenerator[StreamEvent, None]:
        """The answer's events; :class:`Started` first unless a reasoning phase (``before``) came first."""
        upstream = self.client.completion_stream(body)
        first_event = await _first_event(upstream)
        try:
            if before is None:
                yield Started()
            last: dict[str, Any] = {}

            # "whole" (the default): calls are held back and sent once generation is over and each
            # has been validated, so a client never holds a cut or invalid call. "incremental":
            # argument text is sent as it is generated, as OpenAI streams it.
            incremental = self.stream_tool_calls == "incremental"
            # after a reasoning section, the blank lines before the answer are not content
            lead = plan.reasoning is not None

            def visible(events: list[ParseEvent]) -> tuple[ParseEvent, ...]:
                nonlocal lead
                shown: list[ParseEvent] = []
                for ev in events:
                    if isinstance(ev, ContentDelta):
                        if lead:
                            ev = ContentDelta(ev.text.lstrip())
                            lead = not ev.text
                        if ev.text:
                            shown.append(ev)
                    elif incremental:
                        shown.append(ev)
                return tuple(shown)

            async for event in _chained(first_event, upstream):
                last = event
                shown = visible(plan.parser.feed(event.get("content", "")))
                probs = event.get("completion_probabilities") if sampling.logprobs is not None else None
                yield Step(shown, token_probs(probs) if probs else None)
            yield Step(visible(plan.parser.finish()))
            parsed = plan.parser.result()
            if plan.reasoning is not None:
                parsed = _without_leading_space(parsed)
            settled, finish = self._settle(conv, parsed, _cut_by(last, sampling.stop), plan)
            if not incremental:
                for i, call in enumerate(settled.tool_calls):
                    yield CallDone(i, call)
            yield Finished(finish, _usage(last) if before is None else before.then(_usage(last)),
                           client_stop(last, sampling.stop))
        finally:
            await upstream.aclose()


async def _first_event(upstream: AsyncGenerator[dict[str, Any], None]) -> dict[str, Any]:
    try:
        return await anext(upstream)
    except StopAsyncIteration:
        return {"content": "", "stop": True}


async def _chained(first: dict[str, Any], upstream: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    yield first
    async for event in upstream:
        yield event


__all__ = ["CallDone", "Engine", "Finished", "ReasoningRun", "ReasoningStep", "ReasoningText", "Result", "Sampling",
           "Started", "Step", "StreamEvent", "TokenProb", "TokenUsage", "common_sampling_fields", "sampling_fields",
           "strip_partial_stop", "token_probs"]
