"""The reasoning flow without a server: a scripted llama-server answers the reasoning phase, then the answer.

Qwen3's template (hermes calls, ``<think>`` reasoning) serves as the thinking model: its
generation prompt opens no block by default, so the proxy appends ``<think>``; with
``enable_thinking: false`` it renders a closed, empty block itself.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from oaiproxy.api.chat.protocol import ChatCompletionRequest
from oaiproxy.api.chat.serving import ChatEngine
from oaiproxy.api.protocol import parse_request
from oaiproxy.dialects import detect_style
from oaiproxy.engine import Engine
from oaiproxy.errors import BadRequest
from oaiproxy.settings import Settings
from oaiproxy.templating.chat_template import ChatTemplate

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
    "additionalProperties": False}}}
QUESTION = [{"role": "user", "content": "Weather in Paris?"}]

#: the reasoning mentions the call's trigger word: it must not start a call (no grammar in that phase)
REASONING = ["\nThe user wants the weather. ", "I will write <tool_call> with get_weather", " for Paris.\n"]
CALL = ['<tool_call>\n{"name": "get_weather", ', '"arguments": {"city": "Paris"}}\n</tool_call>']
CLOSED = {"stop_type": "word", "stopping_word": "</think>", "tokens_predicted": 20, "tokens_evaluated": 30}
ANSWERED = {"stop_type": "eos", "tokens_predicted": 12, "tokens_evaluated": 55}


class PhasedUpstream:
    """Stands in for llama-server: each ``/completion`` call takes the next scripted answer (pieces, end)."""

    def __init__(self, *script: tuple[list[str], dict[str, Any]]):
        self.script = list(script)
        self.bodies: list[dict[str, Any]] = []

    def _next(self, body: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        self.bodies.append(body)
        assert self.script, f"an unexpected /completion call: {body.get('prompt', '')[-80:]!r}"
        return self.script.pop(0)

    async def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        pieces, end = self._next(body)
        return {"content": "".join(pieces), "stop": True, **end}

    async def completion_stream(self, body: dict[str, Any]):
        pieces, end = self._next(body)
        for piece in pieces:
            yield {"content": piece, "stop": False}
        yield {"content": "", "stop": True, **end}


def _engine(templates_dir: Path, upstream: PhasedUpstream, template: str = "Qwen-Qwen3-0.6B.jinja",
            **settings: Any) -> ChatEngine:
    source = (templates_dir / template).read_text(encoding="utf-8")
    tpl = ChatTemplate(source, bos_token="", eos_token="<|im_end|>", name=template)
    return ChatEngine(Engine.from_settings(Settings(**settings), template=tpl, style=detect_style(source),
                                           client=upstream, model_id="m"))  # type: ignore[arg-type]


def _req(**fields: Any) -> ChatCompletionRequest:
    return parse_request(ChatCompletionRequest, {"messages": QUESTION, "tools": [WEATHER_TOOL], **fields})


def _complete(engine: ChatEngine, **fields: Any) -> dict[str, Any]:
    return asyncio.run(engine.complete(_req(**fields))).model_dump()


def _stream(engine: ChatEngine, **fields: Any) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        return [c.model_dump(exclude_none=True)
                async for c in engine.stream(_req(stream=True, stream_options={"include_usage": True}, **fields))]
    return asyncio.run(run())


def _call(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (call,) = message["tool_calls"]
    return call["function"]["name"], json.loads(call["function"]["arguments"])


def test_reasoning_then_a_lazy_call(templates_dir: Path) -> None:
    upstream = PhasedUpstream((REASONING, CLOSED), (CALL, ANSWERED))
    out = _complete(_engine(templates_dir, upstream))
    message = out["choices"][0]["message"]
    assert message["reasoning_content"] == "".join(REASONING).strip()
    assert message["content"] is None and _call(message) == ("get_weather", {"city": "Paris"})
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    first, answer = upstream.bodies
    # the reasoning is free: no grammar, the trigger word inside it starts nothing; it stops at the closer
    assert "grammar" not in first and "</think>" in first["stop"] and first["prompt"].endswith("<think>")
    assert "n_probs" not in first and "</think>" in first["preserved_tokens"]
    # the answer follows the closed reasoning, under the lazy calls grammar
    assert answer["prompt"] == first["prompt"] + "".join(REASONING) + "</think>"
    assert answer["grammar_lazy"] is True and answer["grammar_triggers"]
    assert out["usage"]["completion_tokens"] == 32 and out["usage"]["prompt_tokens"] == 30


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_forced_call_still_follows_the_reasoning(templates_dir: Path, choice: Any) -> None:
    upstream = PhasedUpstream((REASONING, CLOSED), (CALL, ANSWERED))
    message = _complete(_engine(templates_dir, upstream), tool_choice=choice)["choices"][0]["message"]
    assert message["reasoning_content"] and _call(message) == ("get_weather", {"city": "Paris"})
    first, answer = upstream.bodies
    assert "grammar" not in first
    assert answer["grammar"] and not answer.get("grammar_lazy")


def test_the_budget_closes_the_reasoning_and_the_answer_follows(templates_dir: Path) -> None:
    cut = {"stop_type": "limit", "tokens_predicted": 5, "tokens_evaluated": 30}
    upstream = PhasedUpstream((["\nHmm, let me th", "</thi"], cut), (CALL, ANSWERED))
    out = _complete(_engine(templates_dir, upstream, reasoning_budget=5), max_tokens=100, tool_choice="required")
    first, answer = upstream.bodies
    assert first["n_predict"] == 5 and answer["n_predict"] == 95
    assert answer["prompt"] == first["prompt"] + "\nHmm, let me th</think>"  # a partial closer is dropped
    message = out["choices"][0]["message"]
    assert message["reasoning_content"] == "Hmm, let me th" and _call(message)[0] == "get_weather"


@pytest.mark.parametrize("effort, budget", [("minimal", 256), ("low", 1024), ("medium", 4096), ("high", 8000)])
def test_reasoning_effort_bounds_the_reasoning(templates_dir: Path, effort: str, budget: int) -> None:
    upstream = PhasedUpstream((REASONING, CLOSED), (CALL, ANSWERED))
    _complete(_engine(templates_dir, upstream), max_tokens=8000, reasoning_effort=effort)
    assert upstream.bodies[0]["n_predict"] == budget


def test_the_server_budget_and_the_effort_take_the_smaller(templates_dir: Path) -> None:
    upstream = PhasedUpstream((REASONING, CLOSED), (CALL, ANSWERED))
    _complete(_engine(templates_dir, upstream, reasoning_budget=300), max_tokens=8000, reasoning_effort="low")
    assert upstream.bodies[0]["n_predict"] == 300


def test_max_tokens_running_out_in_the_reasoning_is_length(templates_dir: Path) -> None:
    cut = {"stop_type": "limit", "tokens_predicted": 8, "tokens_evaluated": 30}
    upstream = PhasedUpstream((["\nStill thinking about it"], cut))
    out = _complete(_engine(templates_dir, upstream), max_tokens=8)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "length" and len(upstream.bodies) == 1
    assert choice["message"]["reasoning_content"] == "Still thinking about it"
    assert choice["message"]["content"] is None and choice["message"]["tool_calls"] is None
    assert out["usage"]["completion_tokens"] == 8


@pytest.mark.parametrize("fields", [{"reasoning_effort": "none"},
                                    {"chat_template_kwargs": {"enable_thinking": False}}])
def test_thinking_off_is_one_phase_after_a_closed_block(templates_dir: Path, fields: dict[str, Any]) -> None:
    upstream = PhasedUpstream((CALL, ANSWERED))
    message = _complete(_engine(templates_dir, upstream), **fields)["choices"][0]["message"]
    (body,) = upstream.bodies
    assert body["prompt"].endswith("<think>\n\n</think>\n\n")  # Qwen3's own thinking-off prefill
    assert "reasoning_content" not in message and _call(message)[0] == "get_weather"


def test_a_budget_of_zero_is_thinking_off(templates_dir: Path) -> None:
    upstream = PhasedUpstream((CALL, ANSWERED))
    _complete(_engine(templates_dir, upstream, reasoning_budget=0))
    (body,) = upstream.bodies
    assert body["prompt"].endswith("<think>\n\n</think>\n\n")


def test_an_opened_reasoning_is_closed_when_thinking_is_off(templates_dir: Path) -> None:
    # DeepSeek R1's template always prefills "<think>\n": thinking off closes it at once
    upstream = PhasedUpstream((["The answer."], ANSWERED))
    engine = _engine(templates_dir, upstream, "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja")
    _complete(engine, reasoning_effort="none", tools=None)
    (body,) = upstream.bodies
    assert body["prompt"].endswith("<think>\n</think>")


def test_streaming_sends_reasoning_deltas_then_the_answer(templates_dir: Path) -> None:
    upstream = PhasedUpstream((REASONING, CLOSED), (["\n\nIt is ", "sunny."], ANSWERED))
    chunks = _stream(_engine(templates_dir, upstream), tools=None)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    reasoning = [d["reasoning_content"] for d in deltas if "reasoning_content" in d]
    content = "".join(d.get("content") or "" for d in deltas)
    assert "".join(reasoning) == "".join(REASONING).strip() and len(reasoning) == 3
    assert content == "It is sunny."  # never the reasoning, and not the blank lines after the closer
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert all(i < first_content for i, d in enumerate(deltas) if "reasoning_content" in d)
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 32


def test_streaming_a_required_call_after_the_reasoning(templates_dir: Path) -> None:
    upstream = PhasedUpstream((REASONING, CLOSED), (CALL, ANSWERED))
    chunks = _stream(_engine(templates_dir, upstream), tool_choice="required")
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "".join(REASONING).strip()
    (calls,) = [d["tool_calls"] for d in deltas if d.get("tool_calls")]
    assert calls[0]["function"]["name"] == "get_weather"
    assert not any(d.get("content") for d in deltas)
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_streaming_length_in_the_reasoning(templates_dir: Path) -> None:
    cut = {"stop_type": "limit", "tokens_predicted": 4, "tokens_evaluated": 30}
    upstream = PhasedUpstream((["\nThinking ", "and thinking"], cut))
    chunks = _stream(_engine(templates_dir, upstream), max_tokens=4)
    assert chunks[-2]["choices"][0]["finish_reason"] == "length" and len(upstream.bodies) == 1
    assert "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"]) == \
        "Thinking and thinking"


def test_past_reasoning_is_rendered_where_the_template_reads_it(templates_dir: Path) -> None:
    history = [*QUESTION,
               {"role": "assistant", "content": None, "reasoning_content": "I should look it up.",
                "tool_calls": [{"id": "call_1", "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    # Qwen3 reads reasoning_content; Solar Open reads it as `reasoning` (OpenRouter's name is accepted too)
    for template, sent in (("Qwen-Qwen3-0.6B.jinja", "reasoning_content"), ("upstage-Solar-Open-100B.jinja",
                                                                             "reasoning")):
        messages = [dict(m) for m in history]
        messages[1][sent] = messages[1].pop("reasoning_content")
        engine = _engine(templates_dir, PhasedUpstream(), template)
        _, plan, _ = engine.plan(_req(messages=messages))
        assert "I should look it up." in plan.prompt, template


def test_template_variables_reach_the_template(templates_dir: Path) -> None:
    engine = _engine(templates_dir, PhasedUpstream(), "openai-gpt-oss-120b.jinja")
    _, plan, _ = engine.plan(_req(reasoning_effort="low"))
    assert "Reasoning: low" in plan.prompt
    engine = _engine(templates_dir, PhasedUpstream(), "Qwen-Qwen3-0.6B.jinja")
    _, plan, _ = engine.plan(_req(chat_template_kwargs={"enable_thinking": False}))
    assert plan.prompt.endswith("<think>\n\n</think>\n\n")


@pytest.mark.parametrize("fields, param", [
    ({"chat_template_kwargs": "enable_thinking"}, "chat_template_kwargs"),
    ({"chat_template_kwargs": {"enable_thinking": "no"}}, "chat_template_kwargs.enable_thinking"),
    ({"chat_template_kwargs": {"messages": []}}, "chat_template_kwargs.messages"),
    ({"chat_template_kwargs": {"add_generation_prompt": False}}, "chat_template_kwargs.add_generation_prompt"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
])
def test_bad_reasoning_fields_are_a_400_naming_them(templates_dir: Path, fields: dict[str, Any], param: str) -> None:
    engine = _engine(templates_dir, PhasedUpstream())
    with pytest.raises(BadRequest) as err:
        engine.translate(_req(**fields))
    assert err.value.status == 400 and err.value.param == param


def test_a_model_without_reasoning_is_one_phase(templates_dir: Path) -> None:
    upstream = PhasedUpstream((CALL, ANSWERED))
    out = _complete(_engine(templates_dir, upstream, "Qwen-Qwen2.5-7B-Instruct.jinja"), reasoning_effort="high")
    assert len(upstream.bodies) == 1 and "reasoning_content" not in out["choices"][0]["message"]
