"""Reasoning through the Responses surface on the real llama-server and model: a thinking template whose
prompt opens the reasoning (Qwen3.5's ``<think>\\n``) gives a ``reasoning`` output item before the
``function_call``, streamed (``response.reasoning_text.delta``) and not; the call still validates."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from oaiproxy.api.protocol import parse_request
from oaiproxy.api.responses.protocol import ResponsesRequest
from oaiproxy.api.responses.serving import ResponsesEngine
from oaiproxy.dialects import detect_style
from oaiproxy.engine import Engine
from oaiproxy.runtime.upstream import LlamaServerClient
from oaiproxy.settings import Settings
from oaiproxy.templating.chat_template import ChatTemplate
from tests._processes import LlamaServer

pytestmark = pytest.mark.integration

TEMPLATE = "Qwen3.5-4B.jinja"
BUDGET = 24
PARAMS = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16}}, "required": ["city"],
          "additionalProperties": False}
BODY: dict[str, Any] = {"input": "What is the weather in Paris?", "max_output_tokens": BUDGET + 120,
                        "tools": [{"type": "function", "name": "get_weather", "parameters": PARAMS}],
                        "tool_choice": "required", "reasoning": {"effort": "low"}, "temperature": 0,
                        "parallel_tool_calls": False}


def _engine(templates_dir: Path, server: LlamaServer) -> ResponsesEngine:
    source = (templates_dir / TEMPLATE).read_text(encoding="utf-8")
    template = ChatTemplate(source, bos_token="<bos>", eos_token="<eos>", name=TEMPLATE)
    return ResponsesEngine(Engine.from_settings(Settings(reasoning_budget=BUDGET), template=template,
                                                style=detect_style(source), client=LlamaServerClient(server.url),
                                                model_id="gemma"))


def test_reasoning_item_then_a_valid_call(templates_dir: Path, upstream: LlamaServer) -> None:
    engine = _engine(templates_dir, upstream)

    async def complete() -> Any:
        try:
            return await engine.complete(parse_request(ResponsesRequest, BODY))
        finally:
            await engine.core.client.close()

    whole = asyncio.run(complete())
    kinds = [item.type for item in whole.output]
    assert kinds[0] == "reasoning" and kinds[-1] == "function_call" and "message" not in kinds, kinds
    reasoning = whole.output[0]
    assert reasoning.content and reasoning.content[0].text.strip()
    assert "</think>" not in reasoning.content[0].text  # the closer ends the reasoning; it is never part of it
    call = whole.output[-1]
    jsonschema.validate(json.loads(call.arguments), PARAMS)
    assert whole.usage is not None and 0 < whole.usage.output_tokens_details.reasoning_tokens <= BUDGET

    async def stream() -> list[Any]:
        try:
            return [e async for e in engine.stream(parse_request(ResponsesRequest, {**BODY, "stream": True}))]
        finally:
            await engine.core.client.close()

    events = asyncio.run(stream())
    deltas = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    final = events[-1].response
    assert events[-1].type == "response.completed" and deltas.strip(), events[-1].response.output
    assert [i.type for i in final.output][0] == "reasoning" and final.output[0].content[0].text == deltas
    jsonschema.validate(json.loads(final.output[-1].arguments), PARAMS)
