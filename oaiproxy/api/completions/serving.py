"""Legacy text completions (``POST /v1/completions``) on llama-server's ``/completion``.

No chat template, no style, no grammar: the prompt goes to the model as it is,
which is what clients of this older endpoint (code completion, scoring, base
models) expect. One upstream request per prompt and per ``n``; streams from
several of them are merged into one SSE stream with per-choice indices, as
OpenAI does.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal

from oaiproxy.api.completions.protocol import (
    DEFAULT_MAX_TOKENS,
    MAX_CHOICES,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    Prompt,
    TextCompletion,
)
from oaiproxy.api.protocol import PromptTokensDetails, Usage
from oaiproxy.engine import common_sampling_fields
from oaiproxy.errors import BadRequest
from oaiproxy.runtime.upstream import LlamaServerClient


@dataclass
class _Job:
    """One choice: which prompt, what to echo, and the llama-server request body."""

    index: int
    prompt_index: int
    echo: str
    body: dict[str, Any]


def new_completion_id() -> str:
    return "cmpl-" + secrets.token_hex(12)


def split_prompts(prompt: Prompt) -> list[str | list[int]]:
    """OpenAI's four prompt shapes as a list of single prompts (text or token ids)."""
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise BadRequest("'prompt' must not be an empty list", param="prompt", code="invalid_value")
    if all(isinstance(p, int) for p in prompt):
        return [list(prompt)]  # type: ignore[arg-type]
    out: list[str | list[int]] = []
    for i, p in enumerate(prompt):
        if isinstance(p, list) and not p:
            raise BadRequest(f"'prompt[{i}]' must not be an empty token list", param=f"prompt[{i}]",
                             code="invalid_value")
        out.append(p)  # type: ignore[arg-type]
    return out


def check_supported(req: CompletionRequest) -> None:
    """Refuse, by name, the options this proxy cannot honour rather than silently ignore them."""
    if req.suffix:
        raise BadRequest("'suffix' (fill-in-the-middle) is not supported by oaiproxy; send the prefix as 'prompt'",
                         param="suffix", code="unsupported_parameter")
    if req.best_of is not None and req.best_of != req.n:
        raise BadRequest("'best_of' other than 'n' is not supported", param="best_of", code="unsupported_parameter")
    if req.echo and req.logprobs is not None:
        raise BadRequest("'logprobs' together with 'echo' is not supported: llama-server gives no logprobs "
                         "for prompt tokens", param="logprobs", code="unsupported_parameter")


def sampling_fields(req: CompletionRequest) -> dict[str, Any]:
    """The request's sampling options in llama-server ``/completion`` terms."""
    body: dict[str, Any] = {
        "n_predict": DEFAULT_MAX_TOKENS if req.max_tokens is None else req.max_tokens,
        "cache_prompt": True,
    }
    body.update(common_sampling_fields(req))
    if req.stop:
        body["stop"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    if req.logprobs is not None:
        body["n_probs"] = max(1, req.logprobs)
    return body


def plan_jobs(req: CompletionRequest) -> list[_Job]:
    """One llama-server request per prompt and per ``n``, in OpenAI's choice order."""
    check_supported(req)
    prompts = split_prompts(req.prompt)
    n = req.n or 1  # never None once validated (null means 1)
    if len(prompts) * n > MAX_CHOICES:
        raise BadRequest(f"{len(prompts)} prompts × n={n} asks for more than {MAX_CHOICES} choices",
                         param="n", code="invalid_value")
    if req.echo and any(not isinstance(p, str) for p in prompts):
        raise BadRequest("'echo' needs text prompts; token-id prompts cannot be echoed", param="echo",
                         code="unsupported_parameter")
    base = sampling_fields(req)
    jobs: list[_Job] = []
    for p_index, prompt in enumerate(prompts):
        for j in range(n):
            body = {**base, "prompt": prompt}
            if req.seed is not None and n > 1:
                body["seed"] = req.seed + j  # n identical samples would be useless
            jobs.append(_Job(index=len(jobs), prompt_index=p_index,
                             echo=prompt if req.echo and isinstance(prompt, str) else "", body=body))
    return jobs


def _blame_prompt(exc: BaseException) -> BaseException:
    """llama-server refuses a request for its prompt (invalid token ids, too long): name the field."""
    if isinstance(exc, BadRequest) and exc.param is None:
        exc.param = "prompt"
    return exc


def finish_reason(event: dict[str, Any]) -> Literal["stop", "length"]:
    return "length" if event.get("stop_type") == "limit" or event.get("truncated") else "stop"


def to_logprobs(items: list[dict[str, Any]], top: int, offset: int) -> CompletionLogprobs:
    """llama-server's ``completion_probabilities`` as the legacy parallel lists, offsets from ``offset``."""
    out = CompletionLogprobs()
    for item in items:
        token = item.get("token", "")
        out.tokens.append(token)
        out.token_logprobs.append(item.get("logprob"))
        out.top_logprobs.append({t.get("token", ""): t.get("logprob", 0.0)
                                 for t in (item.get("top_logprobs") or [])[:top]})
        out.text_offset.append(offset)
        offset += len(token)
    return out


def _usage(jobs: list[_Job], finals: dict[int, dict[str, Any]]) -> Usage:
    # A prompt is counted once however many choices it has, as OpenAI does.
    prompt_tokens: dict[int, int] = {}
    cached: dict[int, int] = {}
    completion = 0
    for job in jobs:
        data = finals.get(job.index, {})
        prompt_tokens.setdefault(job.prompt_index, int(data.get("tokens_evaluated") or 0))
        cached.setdefault(job.prompt_index, int((data.get("timings") or {}).get("cache_n") or 0))
        completion += int(data.get("tokens_predicted") or 0)
    prompt = sum(prompt_tokens.values())
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=sum(cached.values())))


class CompletionEngine:
    """Serves legacy completions for one model on one llama-server.

    A request's choices (prompts × ``n``) run at most ``slots`` at a time, where
    ``slots`` is the admission limit of the client (``--parallel``): the rest
    wait their turn and start as earlier ones end. A request asking for more
    choices than there are slots therefore finishes instead of holding every
    slot while it waits for one, and does not crowd other clients out of the
    admission queue.
    """

    def __init__(self, client: LlamaServerClient, model_id: str):
        self.client = client
        self.model_id = model_id

    def _slots(self) -> int:
        """How many of one request's choices may be upstream at once: the client's admission limit."""
        admission = getattr(self.client, "admission", None)  # stand-in clients in tests have none
        return max(1, min(MAX_CHOICES, getattr(admission, "slots", MAX_CHOICES)))

    async def complete(self, req: CompletionRequest) -> TextCompletion:
        jobs = plan_jobs(req)
        gate = asyncio.Semaphore(self._slots())

        async def run(job: _Job) -> dict[str, Any]:
            async with gate:
                return await self.client.completion(job.body)

        # a TaskGroup, not gather: when one request fails the others are cancelled, freeing their slots
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(run(job)) for job in jobs]
        except ExceptionGroup as failed:
            raise _blame_prompt(failed.exceptions[0]) from None  # e.g. a prompt over the context
        results = [task.result() for task in tasks]
        choices = []
        for job, data in zip(jobs, results, strict=True):
            text = data.get("content", "")
            logprobs = None
            if req.logprobs is not None:
                logprobs = to_logprobs(data.get("completion_probabilities") or [], req.logprobs, len(job.echo))
            choices.append(CompletionChoice(text=job.echo + text, index=job.index, logprobs=logprobs,
                                            finish_reason=finish_reason(data)))
        return TextCompletion(id=new_completion_id(), created=int(time.time()), model=self.model_id,
                              choices=choices, usage=_usage(jobs, dict(enumerate(results))))

    async def stream(self, req: CompletionRequest) -> AsyncGenerator[TextCompletion, None]:
        """Chunks as llama-server produces them, a finish chunk per choice, then optional usage.

        Each choice is pumped from its own llama-server stream into one queue, so
        an open stream never waits for the consumer and a choice that waits for a
        slot never blocks the others. The first chunk goes out once the choices
        that can start at once (up to ``slots``) have each sent their first event:
        a request llama-server refuses for them (say, a prompt over the context)
        is still a plain HTTP error. A later choice refused that way ends the
        stream with an error event.
        """
        jobs = plan_jobs(req)
        cid, created = new_completion_id(), int(time.time())
        slots = self._slots()
        gate = asyncio.Semaphore(slots)
        queue: asyncio.Queue[tuple[int, dict[str, Any] | BaseException | None]] = asyncio.Queue()

        def chunk(choice: CompletionChoice) -> TextCompletion:
            return TextCompletion(id=cid, created=created, model=self.model_id, choices=[choice])

        async def pump(job: _Job) -> None:
            try:
                async with gate, aclosing(self.client.completion_stream(job.body)) as events:
                    async for event in events:
                        await queue.put((job.index, event))
                await queue.put((job.index, None))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # handed to the consumer, which raises it
                await queue.put((job.index, exc))

        pumps = [asyncio.create_task(pump(job)) for job in jobs]
        try:
            # hold events back until the first wave of choices has started (see the docstring)
            first_wave = {job.index for job in jobs[:slots]}
            held: list[tuple[int, dict[str, Any] | None]] = []
            while first_wave:
                i, item = await queue.get()
                if isinstance(item, BaseException):
                    raise _blame_prompt(item)
                first_wave.discard(i)
                held.append((i, item))

            async def items() -> AsyncGenerator[tuple[int, dict[str, Any] | None], None]:
                for pair in held:
                    yield pair
                while True:
                    i, item = await queue.get()
                    if isinstance(item, BaseException):
                        raise _blame_prompt(item)
                    yield i, item

            offsets = {job.index: 0 for job in jobs}
            finals: dict[int, dict[str, Any]] = {}
            for job in jobs:
                if job.echo:
                    offsets[job.index] = len(job.echo)
                    yield chunk(CompletionChoice(text=job.echo, index=job.index))
            open_jobs = len(jobs)
            async with aclosing(items()) as pending:
                async for i, item in pending:
                    if item is None:
                        open_jobs -= 1
                        yield chunk(CompletionChoice(text="", index=i, finish_reason=finish_reason(finals.get(i, {}))))
                        if not open_jobs:
                            break
                        continue
                    finals[i] = item
                    text = item.get("content", "")
                    probs = item.get("completion_probabilities") or []
                    if not text and not (req.logprobs is not None and probs):
                        continue
                    logprobs = to_logprobs(probs, req.logprobs, offsets[i]) if req.logprobs is not None else None
                    offsets[i] += len(text)
                    yield chunk(CompletionChoice(text=text, index=i, logprobs=logprobs))
            if req.stream_options and req.stream_options.include_usage:
                yield TextCompletion(id=cid, created=created, model=self.model_id, choices=[],
                                     usage=_usage(jobs, finals))
        finally:
            # cancelling a pump closes its llama-server stream (aclosing), which frees its slot
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
