"""One chat request, end to end, without HTTP: request → style → plan → llama-server → parser → response.

The HTTP layer hands a validated :class:`ChatCompletionRequest` to
:class:`ChatEngine` and serialises what comes back; everything about
prompts, grammars, sampling and parsing happens here or in the style.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from oaiproxy.templating.chat_template import ChatTemplate
from oaiproxy.api.chat.translate import to_conversation
from oaiproxy.errors import BadRequest, InternalError
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
    TokenLogprob,
    TopLogprob,
)
from oaiproxy.api.protocol import PromptTokensDetails, Usage
from oaiproxy.dialects.base import Style
from oaiproxy.conversation.model import Conversation
from oaiproxy.dialects.base import ContentDelta, GenerationPlan, ParsedOutput, StyleError, ToolCallDelta
from oaiproxy.runtime.upstream import LlamaServerClient
from oaiproxy.validation import validate_tool_calls

log = logging.getLogger("oaiproxy.engine")


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def common_sampling_fields(req: Any) -> dict[str, Any]:
    """Sampling options chat and legacy completions share, in llama-server ``/completion`` terms."""
    body: dict[str, Any] = {}
    for name in ("temperature", "top_p", "top_k", "min_p", "seed", "presence_penalty", "frequency_penalty"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    if req.logit_bias:
        bias = []
        for token, value in req.logit_bias.items():
            try:
                bias.append([int(token), False if value <= -100 else value])  # -100 bans the token
            except ValueError:
                raise BadRequest(f"logit_bias keys are token ids; got {token!r}", param="logit_bias") from None
        body["logit_bias"] = bias
    return body


def sampling_fields(req: ChatCompletionRequest, default_max_tokens: int) -> dict[str, Any]:
    """OpenAI sampling parameters in llama-server ``/completion`` terms."""
    body: dict[str, Any] = {"n_predict": req.max_new_tokens() or default_max_tokens, "cache_prompt": True}
    body.update(common_sampling_fields(req))
    if req.logprobs:
        body["n_probs"] = max(1, req.top_logprobs or 0)
    return body


@dataclass
class _Result:
    parsed: ParsedOutput
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    logprobs: list[dict[str, Any]] = field(default_factory=list)


def strip_partial_stop(text: str, stops: list[str]) -> str:
    """Drop a tail of ``text`` that is the start of a stop string.

    Streaming, llama-server holds such a tail back and drops it when the token
    limit ends generation; the non-streamed answer keeps it. Dropping it here
    makes both answers the same text.
    """
    cut = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), cut, -1):
            if text.endswith(stop[:n]):
                cut = n
                break
    return text[: len(text) - cut] if cut else text


def _cut_short(data: dict[str, Any]) -> bool:
    """Whether llama-server stopped at the token or context limit rather than at an end."""
    return data.get("stop_type") == "limit" or bool(data.get("truncated"))


def _cut_by(data: dict[str, Any], client_stops: list[str]) -> str | None:
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


def _cached_prompt_tokens(data: dict[str, Any]) -> int:
    # llama-server's `tokens_cached` counts generated tokens too; `timings.cache_n` is the prompt part reused.
    return int((data.get("timings") or {}).get("cache_n") or 0)


def _logprobs(items: list[dict[str, Any]], top: int | None) -> ChoiceLogprobs:
    content = []
    for item in items:
        tops = [TopLogprob(token=t.get("token", ""), logprob=t.get("logprob", 0.0), bytes=t.get("bytes"))
                for t in (item.get("top_logprobs") or [])[: top or 0]]
        content.append(TokenLogprob(token=item.get("token", ""), logprob=item.get("logprob", 0.0),
                                    bytes=item.get("bytes"), top_logprobs=tops))
    return ChoiceLogprobs(content=content)


class ChatEngine:
    """Serves chat completions for one model: its template, its style, its llama-server."""

    def __init__(self, *, template: ChatTemplate, style: type[Style], client: LlamaServerClient,
                 model_id: str, default_max_tokens: int = 1024, extra_stops: list[str] | None = None,
                 strip_bos: bool = True, stream_tool_calls: str = "whole", tool_extra_keys: bool = False):
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
        #: whether tool arguments may carry keys their schema does not declare (where it allows them)
        self.tool_extra_keys = tool_extra_keys

    # ------------------------------------------------------------ planning

    def plan(self, req: ChatCompletionRequest) -> tuple[Conversation, GenerationPlan, dict[str, Any]]:
        conv = to_conversation(req, tool_extra_keys=self.tool_extra_keys)
        try:
            plan = self.style.plan(conv)
        except StyleError as exc:
            raise BadRequest(str(exc), param=exc.param) from None
        bos = self.template.bos_token
        if self.strip_bos and bos and plan.prompt.startswith(bos):
            plan.prompt = plan.prompt[len(bos):]
        body = plan.completion_fields()
        body.update(sampling_fields(req, self.default_max_tokens))
        stops = list(dict.fromkeys([*plan.stop, *self.extra_stops, *req.stop_list()]))
        if stops:
            body["stop"] = stops
        return conv, plan, body

    async def plan_async(self, req: ChatCompletionRequest) -> tuple[Conversation, GenerationPlan, dict[str, Any]]:
        """:meth:`plan` in a worker thread: a template render or a big schema may take
        up to their time limits, and the event loop keeps serving meanwhile."""
        return await asyncio.to_thread(self.plan, req)

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

    # ------------------------------------------------------------ non-streaming

    async def _generate(self, conv: Conversation, plan: GenerationPlan, body: dict[str, Any],
                        client_stops: list[str]) -> _Result:
        data = await self.client.completion(body)
        text = data.get("content", "")
        if _cut_short(data):
            text = strip_partial_stop(text, body.get("stop") or [])
        plan.parser.feed(text)
        plan.parser.finish()
        parsed, finish = self._settle(conv, plan.parser.result(), _cut_by(data, client_stops))
        return _Result(
            parsed=parsed, finish_reason=finish,
            prompt_tokens=int(data.get("tokens_evaluated") or 0),
            completion_tokens=int(data.get("tokens_predicted") or 0),
            cached_tokens=_cached_prompt_tokens(data),
            logprobs=data.get("completion_probabilities") or [],
        )

    async def complete(self, req: ChatCompletionRequest) -> ChatCompletion:
        results = []
        plans = [await self.plan_async(req) for _ in range(req.n)]
        if req.n > 1 and req.seed is not None:
            for i, (_, _, body) in enumerate(plans):
                body["seed"] = req.seed + i
        # a TaskGroup: when one choice fails, the others are cancelled and stop generating
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._generate(c, p, b, req.stop_list())) for c, p, b in plans]
        except BaseExceptionGroup as group_error:
            raise group_error.exceptions[0] from None  # the client gets the first choice's error as it is
        results = [t.result() for t in tasks]
        choices = []
        for i, res in enumerate(results):
            calls = [ResponseToolCall(id=tc.id, function=ResponseFunction(name=tc.name, arguments=tc.arguments))
                     for tc in res.parsed.tool_calls]
            choices.append(Choice(
                index=i,
                message=ResponseMessage(content=res.parsed.content, tool_calls=calls or None),
                logprobs=_logprobs(res.logprobs, req.top_logprobs) if req.logprobs else None,
                finish_reason=res.finish_reason,
            ))
        prompt = results[0].prompt_tokens
        completion = sum(r.completion_tokens for r in results)
        return ChatCompletion(
            id=new_completion_id(), created=int(time.time()), model=self.model_id, choices=choices,
            usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                        prompt_tokens_details=PromptTokensDetails(cached_tokens=results[0].cached_tokens)),
        )

    # ------------------------------------------------------------ streaming

    async def stream(self, req: ChatCompletionRequest) -> AsyncIterator[ChatCompletionChunk]:
        """Chunks in OpenAI's order: role, content/tool-call deltas, finish_reason, optional usage."""
        if req.n > 1:
            raise BadRequest("n > 1 is not supported with stream: true", param="n")
        conv, plan, body = await self.plan_async(req)
        cid, created = new_completion_id(), int(time.time())

        def chunk(delta: Delta, finish: str | None = None, logprobs: ChoiceLogprobs | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(id=cid, created=created, model=self.model_id,
                                       choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish,
                                                            logprobs=logprobs)])

        upstream = self.client.completion_stream(body)
        # Wait for llama-server's first event before the role chunk, so that an
        # upstream refusal (e.g. a prompt over the context) is still a plain HTTP error.
        try:
            first_event = await anext(upstream)
        except StopAsyncIteration:
            first_event = {"content": "", "stop": True}
        try:
            yield chunk(Delta(role="assistant", content=""))
            last: dict[str, Any] = {}

            # "whole" (the default): calls are held back and sent once generation is over and each
            # has been validated, so a client never holds a cut or invalid call. "incremental":
            # argument text is sent as it is generated, as OpenAI streams it.
            incremental = self.stream_tool_calls == "incremental"

            def deltas(events: list[Any]) -> list[ChatCompletionChunk]:
                out = []
                for ev in events:
                    if isinstance(ev, ContentDelta):
                        if ev.text:
                            out.append(chunk(Delta(content=ev.text)))
                    elif isinstance(ev, ToolCallDelta) and incremental:
                        first = ev.id is not None
                        out.append(chunk(Delta(tool_calls=[DeltaToolCall(
                            index=ev.index, id=ev.id, type="function" if first else None,
                            function=DeltaFunction(name=ev.name, arguments=ev.arguments),
                        )])))
                return out

            async def events() -> AsyncIterator[dict[str, Any]]:
                yield first_event
                async for ev in upstream:
                    yield ev

            async for event in events():
                last = event
                out = deltas(plan.parser.feed(event.get("content", "")))
                probs = event.get("completion_probabilities") if req.logprobs else None
                if probs and not out:  # tokens of a held-back call: their logprobs still reach the client
                    out = [chunk(Delta())]
                for c in out:
                    if probs:
                        c.choices[0].logprobs = _logprobs(probs, req.top_logprobs)
                    yield c
            for c in deltas(plan.parser.finish()):
                yield c
            settled, finish = self._settle(conv, plan.parser.result(), _cut_by(last, req.stop_list()))
            if not incremental:
                for i, call in enumerate(settled.tool_calls):
                    yield chunk(Delta(tool_calls=[DeltaToolCall(
                        index=i, id=call.id, type="function",
                        function=DeltaFunction(name=call.name, arguments=call.arguments))]))
            yield chunk(Delta(), finish)
            if req.stream_options and req.stream_options.include_usage:
                prompt = int(last.get("tokens_evaluated") or 0)
                completion = int(last.get("tokens_predicted") or 0)
                yield ChatCompletionChunk(
                    id=cid, created=created, model=self.model_id, choices=[],
                    usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                                prompt_tokens_details=PromptTokensDetails(cached_tokens=_cached_prompt_tokens(last))),
                )
        finally:
            await upstream.aclose()
