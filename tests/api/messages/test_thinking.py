"""Thinking: Anthropic's ``thinking`` parameter and blocks on the engine's reasoning flow, without a server.

Qwen3's template is the thinking model (``<think>`` reasoning, hermes calls), as in
tests/reasoning/test_two_phase.py; a scripted llama-server answers the reasoning phase, then the answer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from oaiproxy.api.messages.protocol import MessagesRequest, parse_anthropic
from oaiproxy.api.messages.serving import MessagesEngine
from oaiproxy.api.messages.translate import reasoning_effort, to_translation
from oaiproxy.dialects import detect_style
from oaiproxy.engine import Engine
from oaiproxy.errors import BadRequest
from oaiproxy.settings import Settings
from oaiproxy.templating.chat_template import ChatTemplate
from tests.api.messages.conftest import CALL, WEATHER

REASONING = ["\nThe user wants the weather. ", "I will call get_weather", " for Paris.\n"]
CLOSED = {"stop_type": "word", "stopping_word": "</think>", "tokens_predicted": 20, "tokens_evaluated": 30}
ANSWERED = {"stop_type": "eos", "tokens_predicted": 12, "tokens_evaluated": 55}
USER = [{"role": "user", "content": "Weather in Paris?"}]


class PhasedUpstream:
    """Each ``/completion`` call takes the next scripted answer (pieces, end)."""

    def __init__(self, *script: tuple[list[str], dict[str, Any]]):
        self.script = list(script)
        self.bodies: list[dict[str, Any]] = []

    def _next(self, body: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        self.bodies.append(body)
        assert self.script, "an unexpected /completion call"
        return self.script.pop(0)

    async def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        pieces, end = self._next(body)
        return {"content": "".join(pieces), "stop": True, **end}

    async def completion_stream(self, body: dict[str, Any]):
        pieces, end = self._next(body)
        for piece in pieces:
            yield {"content": piece, "stop": False}
        yield {"content": "", "stop": True, **end}


def _engine(templates_dir: Path, upstream: PhasedUpstream) -> MessagesEngine:
    source = (templates_dir / "Qwen-Qwen3-0.6B.jinja").read_text(encoding="utf-8")
    tpl = ChatTemplate(source, bos_token="", eos_token="<|im_end|>", name="qwen3")
    return MessagesEngine(Engine.from_settings(Settings(), template=tpl, style=detect_style(source),
                                               client=upstream, model_id="m"))  # type: ignore[arg-type]


def _req(**fields: Any) -> MessagesRequest:
    return parse_anthropic(MessagesRequest, {"model": "m", "max_tokens": 5000, "messages": USER,
                                           "tools": [WEATHER], **fields})


def test_thinking_enabled_gives_a_thinking_block_first(templates_dir: Path) -> None:
    upstream = PhasedUpstream((REASONING, CLOSED), (CALL, ANSWERED))
    msg = asyncio.run(_engine(templates_dir, upstream).complete(
        _req(thinking={"type": "enabled", "budget_tokens": 1024}))).model_dump()
    assert [b["type"] for b in msg["content"]] == ["thinking", "tool_use"]
    assert msg["content"][0] == {"type": "thinking", "signature": "",
                                 "thinking": "The user wants the weather. I will call get_weather for Paris."}
    assert msg["content"][1]["input"] == {"city": "Paris"} and msg["stop_reason"] == "tool_use"
    assert upstream.bodies[0]["n_predict"] == 1024  # budget 1024: the "low" effort's budget
    assert msg["usage"]["output_tokens"] == 32  # the reasoning counts among the output tokens, as Anthropic's


def test_thinking_streams_as_a_thinking_block(templates_dir: Path) -> None:
    upstream = PhasedUpstream((REASONING, CLOSED), (CALL, ANSWERED))

    async def run() -> list[dict[str, Any]]:
        engine = _engine(templates_dir, upstream)
        req = _req(thinking={"type": "enabled", "budget_tokens": 2000}, stream=True)
        return [e.model_dump() async for e in engine.stream(req)]

    events = asyncio.run(run())
    kinds = [(e["type"], e.get("index"), (e.get("delta") or e.get("content_block") or {}).get("type"))
             for e in events]
    assert kinds[:3] == [("message_start", None, None), ("ping", None, None), ("content_block_start", 0, "thinking")]
    thinking = "".join(e["delta"]["thinking"] for e in events
                       if e["type"] == "content_block_delta" and e["delta"]["type"] == "thinking_delta")
    assert thinking == "The user wants the weather. I will call get_weather for Paris."
    assert ("content_block_stop", 0, None) in kinds and ("content_block_start", 1, "tool_use") in kinds
    assert kinds.index(("content_block_stop", 0, None)) < kinds.index(("content_block_start", 1, "tool_use"))
    assert upstream.bodies[0]["n_predict"] == 4096  # 2000 tokens: the "medium" effort's budget holds them


def test_adaptive_thinking_reasons_within_its_effort(templates_dir: Path) -> None:
    """Claude Code 2.1's request: ``thinking: adaptive`` (with ``display``) and ``output_config.effort``."""
    upstream = PhasedUpstream((REASONING, CLOSED), (CALL, ANSWERED))
    msg = asyncio.run(_engine(templates_dir, upstream).complete(_req(
        thinking={"type": "adaptive", "display": "omitted"}, output_config={"effort": "low"}))).model_dump()
    assert [b["type"] for b in msg["content"]] == ["thinking", "tool_use"]
    assert msg["content"][1]["input"] == {"city": "Paris"}
    assert upstream.bodies[0]["n_predict"] == 1024  # the "low" effort's budget


def test_adaptive_effort_defaults_to_high() -> None:
    adaptive = {"type": "adaptive"}
    assert [reasoning_effort(_req(thinking=adaptive, output_config={"effort": e}).thinking, e)  # type: ignore[arg-type]
            for e in ("low", "medium", "high", "xhigh", "max")] == ["low", "medium", "high", "high", "high"]
    assert reasoning_effort(_req(thinking=adaptive).thinking) == "high"  # type: ignore[arg-type]
    with pytest.raises(BadRequest) as err:
        _req(thinking=adaptive, output_config={"effort": "extreme"})
    assert err.value.param == "output_config.effort"


def test_thinking_is_off_unless_enabled(templates_dir: Path) -> None:
    upstream = PhasedUpstream((CALL, ANSWERED))
    msg = asyncio.run(_engine(templates_dir, upstream).complete(_req())).model_dump()
    assert [b["type"] for b in msg["content"]] == ["tool_use"] and len(upstream.bodies) == 1
    assert upstream.bodies[0]["prompt"].rstrip().endswith("</think>")  # the template's closed, empty block


def test_effort_for_a_budget() -> None:
    assert reasoning_effort(None) == "none"
    assert [reasoning_effort(_req(thinking={"type": "enabled", "budget_tokens": n}).thinking)  # type: ignore[arg-type]
            for n in (1024, 1025, 4096, 4097)] == ["low", "medium", "medium", "high"]
    with pytest.raises(BadRequest) as err:
        _req(thinking={"type": "enabled", "budget_tokens": 5000})
    assert "budget_tokens" in err.value.message
    with pytest.raises(BadRequest) as err:
        _req(thinking={"type": "enabled", "budget_tokens": 100})
    assert err.value.param == "thinking.budget_tokens"


def test_past_thinking_is_the_turn_reasoning() -> None:
    t = to_translation(_req(messages=[
        *USER, {"role": "assistant", "content": [{"type": "thinking", "thinking": "Paris is a city.",
                                                  "signature": "sig"},
                                                 {"type": "redacted_thinking", "data": "xx"},
                                                 {"type": "text", "text": "Sunny."}]},
        {"role": "user", "content": "Thanks"}]))
    assistant = t.conversation.messages[1]
    assert assistant == {"role": "assistant", "content": "Sunny.", "reasoning_content": "Paris is a city."}


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages[0].content[0].text"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}, "messages[0].content[0].tool_use_id"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages[0].content[0]"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
    ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
    ({"system": [{"type": "text", "text": 1}]}, "system[0].text"),
])
def test_errors_name_the_field_not_the_block_type(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_anthropic(MessagesRequest, {"model": "m", "max_tokens": 9, "messages": USER, **body})
    assert err.value.param == param, err.value.message
