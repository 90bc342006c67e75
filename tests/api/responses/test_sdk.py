"""The OpenAI Responses API through the official openai SDK, on the real proxy and the real default model:
text, tools (required, named, a round trip with ``function_call_output``), structured output with
``responses.parse``, streaming that agrees with the non-streamed answer, and errors as the SDK's typed
exceptions (the Agents SDK's default Responses model runs its tool in tests/api/test_tools_sdk.py).
Every returned ``function_call`` names a requested tool and its arguments validate against that tool's schema."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from pydantic import BaseModel

from tests._processes import ProxyProcess
from tests.api.conftest import MODEL

pytestmark = pytest.mark.integration

UNIT = {"type": "string", "enum": ["celsius", "fahrenheit"]}
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}, "unit": UNIT},
                          "required": ["city", "unit"], "additionalProperties": False}}
ADD = {"type": "function", "name": "add", "description": "Add two integers.",
       "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                      "required": ["a", "b"], "additionalProperties": False}}
TOOLS: list[Any] = [WEATHER, ADD]
SCHEMAS = {t["name"]: t["parameters"] for t in TOOLS}
ASK = "What is the weather in Paris, in celsius?"


def calls_of(response: Any) -> list[Any]:
    return [item for item in response.output if item.type == "function_call"]


def assert_valid_calls(response: Any, allowed: set[str]) -> None:
    calls = calls_of(response)
    assert calls, f"no function_call in {response.output}"
    for call in calls:
        assert call.call_id and call.id and call.status == "completed"
        assert call.name in allowed
        jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])


def test_text(client: OpenAI) -> None:
    res = client.responses.create(model=MODEL, input="Write one sentence about the sea.", max_output_tokens=12,
                                  temperature=0)
    assert res.object == "response" and res.model == MODEL and res.id.startswith("resp_")
    assert res.status in ("completed", "incomplete") and res.output_text.strip()
    if res.status == "incomplete":
        assert res.incomplete_details is not None and res.incomplete_details.reason == "max_output_tokens"
    usage = res.usage
    assert usage is not None and 0 < usage.output_tokens <= 12
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_stream_agrees_with_the_whole_answer(client: OpenAI) -> None:
    args: dict[str, Any] = dict(model=MODEL, input="Write one sentence about the sea.", instructions="Be brief.",
                                max_output_tokens=16, temperature=0)
    whole = client.responses.create(**args)
    events = list(client.responses.create(**args, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[0].response.status == "in_progress"
    assert events[-1].type in ("response.completed", "response.incomplete")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text
    final = events[-1].response
    assert final.output_text == whole.output_text and final.status == whole.status
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_tool_choice_required_and_the_stream_gives_the_same_call(client: OpenAI) -> None:
    args: dict[str, Any] = dict(model=MODEL, input=ASK, tools=TOOLS, tool_choice="required", max_output_tokens=120,
                                temperature=0)
    whole = client.responses.create(**args)
    assert whole.status == "completed"
    assert_valid_calls(whole, {"get_weather", "add"})
    with client.responses.stream(**args) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.done" in kinds and kinds[-1] == "response.completed"
    assert_valid_calls(final, {"get_weather", "add"})
    assert [(c.name, json.loads(c.arguments)) for c in calls_of(final)] == \
        [(c.name, json.loads(c.arguments)) for c in calls_of(whole)]


def test_named_tool_choice(client: OpenAI) -> None:
    res = client.responses.create(model=MODEL, input="What is 2 plus 3?", tools=TOOLS,
                                  tool_choice={"type": "function", "name": "add"}, max_output_tokens=120,
                                  temperature=0.7)  # no seed in this API: room for the envelope's longest thought
    assert_valid_calls(res, {"add"})


def test_a_tool_round_trip_with_function_call_output(client: OpenAI) -> None:
    first = client.responses.create(model=MODEL, input=ASK, tools=[WEATHER], tool_choice="required",
                                    max_output_tokens=80, temperature=0)
    call = calls_of(first)[0]
    history: list[Any] = [{"role": "user", "content": ASK}, call.model_dump(exclude_none=True),
                          {"type": "function_call_output", "call_id": call.call_id, "output": "22 degrees celsius"}]
    second = client.responses.create(model=MODEL, input=history, tools=[WEATHER], tool_choice="none",
                                     max_output_tokens=24, temperature=0)
    assert second.status in ("completed", "incomplete") and not calls_of(second) and second.output_text


def test_responses_parse_gives_the_pydantic_object(client: OpenAI) -> None:
    class City(BaseModel):
        name: str
        country: str
        population_millions: float

    res = client.responses.parse(model=MODEL, input="Describe Paris.", text_format=City, max_output_tokens=80,
                                 temperature=0)
    assert isinstance(res.output_parsed, City)
    assert City.model_validate_json(res.output_text) == res.output_parsed


async def test_async_stream_text(aclient: AsyncOpenAI) -> None:
    stream = await aclient.responses.create(model=MODEL, input="Say hello.", max_output_tokens=8, temperature=0,
                                            stream=True)
    text = ""
    async for event in stream:
        if event.type == "response.output_text.delta":
            text += event.delta
    assert text.strip()


@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [WEATHER, {"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[1].type"),
    ({"background": True}, "background"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
])
def test_bad_input_is_a_typed_400_naming_the_field(client: OpenAI, extra: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODEL, input="hi", **extra)
    body = info.value.body
    assert isinstance(body, dict) and body.get("param") == param, body


def test_unknown_stored_responses_are_404s_naming_the_field(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.retrieve("resp_123")
    assert isinstance(info.value.body, dict) and info.value.body.get("param") == "response_id"
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model=MODEL, input="hi", previous_response_id="resp_123")
    assert isinstance(info.value.body, dict) and info.value.body.get("param") == "previous_response_id"


#: the README's Responses example, run as it is written (only the address differs)
README_EXAMPLE = '''\
from openai import OpenAI

client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="unused")
weather = {"type": "function", "name": "get_weather", "description": "Current weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
response = client.responses.create(
    model="gemma-3-270m-q4_k_m", input="What is the weather in Paris?", tools=[weather],
    tool_choice="required", max_output_tokens=200,
)
call = next(item for item in response.output if item.type == "function_call")
print(call.name, call.arguments)  # get_weather {"city": "Paris"}, arguments that validate
'''


def test_readme_example(endpoint_proxy: ProxyProcess, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    assert README_EXAMPLE in readme
    scope: dict[str, Any] = {}
    exec(README_EXAMPLE.replace("http://127.0.0.1:8080", endpoint_proxy.url), scope)  # noqa: S102
    assert scope["response"].status == "completed" and scope["call"].name == "get_weather"
    jsonschema.validate(json.loads(scope["call"].arguments), scope["weather"]["parameters"])
    assert capsys.readouterr().out.startswith("get_weather {")
    scope["client"].close()
