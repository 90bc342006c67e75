"""A Conversation on the real proxy and the real default model (gemma-3 270M), through the official openai SDK.

Four ``responses.create(conversation=...)`` calls: a name said in the first turn, asked back in the second
(streamed), whose prompt is longer than the same question alone by the first turn, and which answers the name
(the same question and history as tests/api/responses/test_state_real.py's chain); then a function tool round
trip, a required call whose arguments validate, and its ``function_call_output``. ``conversations.items.list``
then shows every turn's input and output items, in order, with the responses' own ids, and still does after the
proxy restarts on the same SQLite file. What a 270M base model can do is kept honest: the tool answer is only
checked to be a completed text, not to be about the weather."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openai import OpenAI

from tests._processes import LlamaServer, ProxyProcess
from tests.api.conftest import MODEL

pytestmark = pytest.mark.integration

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                          "required": ["city"], "additionalProperties": False}}


def ids_of(client: OpenAI, response: Any) -> list[tuple[str, str]]:
    """The response's own input items then its output items (id, type), as the conversation should hold them."""
    inputs = [(item.id, item.type) for item in client.responses.input_items.list(response.id, order="asc")]
    return [*inputs, *((item.id, item.type) for item in response.output)]


def test_a_conversation_of_four_turns_with_a_tool_round_trip(upstream: LlamaServer, tmp_path: Path) -> None:
    args = ["--endpoint", upstream.url, "--db-url", f"sqlite+aiosqlite:///{tmp_path / 'conv.db'}"]
    proxy = ProxyProcess(args)
    try:
        client = OpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0, timeout=120)
        conv = client.conversations.create(metadata={"test": "real"})

        first = client.responses.create(model=MODEL, conversation=conv.id,
                                        input="My name is Zorbulon. Say hello to me.", max_output_tokens=24,
                                        temperature=0)
        assert first.conversation is not None and first.conversation.id == conv.id and first.output_text

        question = "What is my name? Answer with the name only."
        with client.responses.stream(model=MODEL, conversation=conv.id, input=question, max_output_tokens=12,
                                     temperature=0) as stream:
            second = stream.get_final_response()
        alone = client.responses.create(model=MODEL, input=question, max_output_tokens=12, temperature=0, store=False)
        assert second.usage is not None and alone.usage is not None and first.usage is not None
        # the first turn (its question and its answer) was in the second turn's prompt
        assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
        # the name was only ever said in the first turn: the history reached the model
        assert "zorbulon" in second.output_text.lower(), second.output_text

        third = client.responses.create(model=MODEL, conversation=conv.id, input="What is the weather in Paris?",
                                        tools=[WEATHER], tool_choice="required",  # type: ignore[list-item]
                                        max_output_tokens=200, temperature=0)  # the generic scheme thinks first
        calls = [item for item in third.output if item.type == "function_call"]
        assert third.status == "completed", third.output
        assert calls and all(c.name == "get_weather" and c.status == "completed" for c in calls)
        for call in calls:
            jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])  # type: ignore[arg-type]

        fourth = client.responses.create(
            model=MODEL, conversation={"id": conv.id}, tools=[WEATHER],  # type: ignore[list-item]
            input=[{"type": "function_call_output", "call_id": c.call_id, "output": "sunny, 21 C"} for c in calls],
            max_output_tokens=24, temperature=0)
        assert fourth.status in ("completed", "incomplete") and fourth.conversation is not None

        expected = [i for r in (first, second, third, fourth) for i in ids_of(client, r)]
        items = list(client.conversations.items.list(conv.id, order="asc", limit=3))  # paged by the SDK
        assert [(i.id, i.type) for i in items] == expected
        kinds = [i.type for i in items]
        assert kinds.count("function_call") == kinds.count("function_call_output") == len(calls)
        assert kinds.index("function_call_output") > kinds.index("function_call") > 4
        assert [i.role for i in items[:5]] == ["user", "assistant", "user", "assistant", "user"]  # type: ignore[union-attr]
        assert items[0].content[0].text == "My name is Zorbulon. Say hello to me."  # type: ignore[union-attr]
        assert items[3].content[0].text == second.output_text  # type: ignore[union-attr]
        assert [i.call_id for i in items if i.type == "function_call_output"] == [c.call_id for c in calls]  # type: ignore[union-attr]
        client.close()
    finally:
        proxy.stop()

    proxy = ProxyProcess(args)  # kept on disk: a new process lists the same items
    try:
        client = OpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0, timeout=120)
        assert [(i.id, i.type) for i in client.conversations.items.list(conv.id, order="asc", limit=100)] == expected
        assert client.conversations.retrieve(conv.id).metadata == {"test": "real"}
        client.close()
    finally:
        proxy.stop()
