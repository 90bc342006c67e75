"""Tool calling and structured output through real clients (openai SDK, LangChain, OpenAI Agents SDK)
on the real default model: whatever a 270M base model writes, a returned tool call names a requested
tool and its arguments validate against that tool's schema."""

from __future__ import annotations

import json
from typing import Literal

import jsonschema
import pytest
from openai import AsyncOpenAI, OpenAI
from pydantic import BaseModel

from tests._processes import ProxyProcess
from tests.api.conftest import MODEL

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two integers.",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"], "additionalProperties": False}}}
TOOLS = [WEATHER, ADD]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]


def assert_valid_calls(calls, allowed: set[str]) -> None:
    assert calls, "no tool call"
    for call in calls:
        assert call.type == "function" and call.id
        assert call.function.name in allowed
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_tool_choice_required(client: OpenAI) -> None:
    res = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required",
                                         max_tokens=120, temperature=0.7, seed=11)
    choice = res.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert_valid_calls(choice.message.tool_calls, {"get_weather", "add"})


def test_named_tool_choice(client: OpenAI) -> None:
    res = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "What is 2 plus 3?"}], tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "add"}}, max_tokens=60, temperature=0.7, seed=5)
    assert res.choices[0].finish_reason == "tool_calls"
    assert_valid_calls(res.choices[0].message.tool_calls, {"add"})


async def test_tool_choice_auto_async(aclient: AsyncOpenAI) -> None:
    res = await aclient.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice="auto",
                                                max_tokens=80, temperature=0.7, seed=3)
    msg = res.choices[0].message
    if msg.tool_calls:  # the model may answer in words instead; a call it makes must still be valid
        assert res.choices[0].finish_reason == "tool_calls"
        assert_valid_calls(msg.tool_calls, {"get_weather", "add"})
    else:
        assert msg.content is not None and res.choices[0].finish_reason in ("stop", "length")


def test_streamed_tool_calls_equal_non_streamed(client: OpenAI) -> None:
    args = dict(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=120,
                temperature=0.8, seed=21)
    whole = client.chat.completions.create(**args)
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(**args, stream=True):
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for tc in chunk.choices[0].delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            if tc.id:
                assert not slot["id"], "a tool call's id is sent once"
                slot["id"] = tc.id
            slot["name"] += (tc.function.name or "") if tc.function else ""
            slot["arguments"] += (tc.function.arguments or "") if tc.function else ""
    assert finish == "tool_calls"
    streamed = [(c["name"], c["arguments"]) for _, c in sorted(calls.items())]
    assert streamed == [(c.function.name, c.function.arguments) for c in whole.choices[0].message.tool_calls]
    assert all(c["id"] for c in calls.values())


class City(BaseModel):
    name: str
    country: str
    population_millions: float
    kind: Literal["capital", "other"]


def test_parse_with_pydantic_response_format(client: OpenAI) -> None:
    res = client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": "Describe Paris as JSON."}], response_format=City,
        max_tokens=80, temperature=0.5, seed=2)
    parsed = res.choices[0].message.parsed
    assert isinstance(parsed, City)
    assert City.model_validate_json(res.choices[0].message.content) == parsed


def test_langchain_bind_tools_and_structured_output(endpoint_proxy: ProxyProcess) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    llm = ChatOpenAI(base_url=endpoint_proxy.base_url, api_key="unused", model=MODEL, temperature=0.5,
                     max_tokens=80, seed=9, max_retries=0)
    message = llm.bind_tools([add], tool_choice="add").invoke("What is 2 plus 3?")
    assert len(message.tool_calls) >= 1
    for call in message.tool_calls:
        assert call["name"] == "add" and set(call["args"]) == {"a", "b"}
        assert all(isinstance(v, int) for v in call["args"].values())
        assert add.invoke(call["args"]) == call["args"]["a"] + call["args"]["b"]
    city = llm.with_structured_output(City).invoke("Describe Paris.")
    assert isinstance(city, City)


@pytest.mark.parametrize("model_class", ["OpenAIChatCompletionsModel", "OpenAIResponsesModel"])
async def test_openai_agents_sdk_function_tool(endpoint_proxy: ProxyProcess, model_class: str) -> None:
    """An Agents SDK agent runs its tool, on Chat Completions and on its default Responses model."""
    import agents
    from agents import Agent, ModelSettings, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    seen: list[tuple[str, str]] = []

    @function_tool
    def get_weather(city: str, unit: Literal["celsius", "fahrenheit"]) -> str:
        """Current weather in a city."""
        seen.append((city, unit))
        return f"22 degrees {unit} in {city}"

    client = AsyncOpenAI(base_url=endpoint_proxy.base_url, api_key="unused", max_retries=0)
    agent = Agent(name="weather", instructions="Answer weather questions with the tool.", tools=[get_weather],
                  model=getattr(agents, model_class)(model=MODEL, openai_client=client),
                  model_settings=ModelSettings(tool_choice="required", max_tokens=120, temperature=0.5),
                  tool_use_behavior="stop_on_first_tool")
    result = await Runner.run(agent, "What is the weather in Paris?", max_turns=2)
    assert len(seen) == 1  # the tool really ran, with arguments the SDK could parse into its signature
    city, unit = seen[0]
    assert isinstance(city, str) and unit in ("celsius", "fahrenheit")
    assert result.final_output == f"22 degrees {unit} in {city}"
    await client.close()
