"""The pre-tools fields ``functions`` / ``function_call``: translated to tool calling and answered in their
own shape (``message.function_call``, finish reason ``function_call``, ``delta.function_call`` chunks), as
OpenAI does. Before, both fields were ignored: a legacy client got no function call at all."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from openai import OpenAI

from oaiproxy.api.chat.legacy_functions import complete, legacy_call_id, legacy_param, stream, to_tools_request
from oaiproxy.api.chat.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    ResponseFunction,
    ResponseMessage,
    ResponseToolCall,
)
from oaiproxy.api.chat.translate import to_conversation
from oaiproxy.api.protocol import Usage, parse_request
from oaiproxy.errors import BadRequest, InternalError
from tests.api.conftest import MODEL, http

WEATHER_FN = {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}
ADD_FN = {
    "name": "add", "description": "Add two integers.",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"], "additionalProperties": False}}
ASK = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]


def req(**kw) -> ChatCompletionRequest:
    return parse_request(ChatCompletionRequest, {"messages": ASK, **kw})


# ---------------------------------------------------------------- units: the request


def test_functions_become_tools_with_parallel_calls_off() -> None:
    out = to_tools_request(req(functions=[WEATHER_FN, ADD_FN]))
    assert [t.function.name for t in out.tools] == ["get_weather", "add"]
    assert out.tools[0].function.parameters == WEATHER_FN["parameters"]
    assert out.tool_choice is None and out.parallel_tool_calls is False  # None: "auto" with tools
    assert to_tools_request(req(functions=[ADD_FN], function_call="none")).tool_choice == "none"
    assert to_tools_request(req(functions=[ADD_FN], function_call="auto")).tool_choice == "auto"
    named = to_tools_request(req(functions=[WEATHER_FN, ADD_FN], function_call={"name": "add"})).tool_choice
    assert named.type == "function" and named.function.name == "add"
    plain = req(tools=[{"type": "function", "function": ADD_FN}])
    assert to_tools_request(plain) is plain


@pytest.mark.parametrize("body, param", [
    (dict(functions=[ADD_FN], tools=[{"type": "function", "function": ADD_FN}]), "functions"),
    (dict(function_call="auto"), "function_call"),
    (dict(tools=[{"type": "function", "function": ADD_FN}], function_call="auto"), "function_call"),
    (dict(functions=[ADD_FN], tool_choice="required"), "tool_choice"),
    (dict(functions=[ADD_FN], parallel_tool_calls=True), "parallel_tool_calls"),
])
def test_inconsistent_legacy_fields_are_400s(body, param) -> None:
    with pytest.raises(BadRequest) as err:
        to_tools_request(req(**body))
    assert err.value.param == param and err.value.status == 400


@pytest.mark.parametrize("body, param", [
    (dict(functions=[ADD_FN, ADD_FN]), "functions[1].name"),
    (dict(functions=[ADD_FN], function_call={"name": "nope"}), "function_call"),
])
async def test_conversation_rules_name_the_legacy_fields(body, param) -> None:
    """Repeated names and a choice naming no function are the conversation's own checks, renamed."""
    async def plan() -> ChatCompletion:
        to_conversation(to_tools_request(req(**body)))
        raise AssertionError("the conversation should have been refused")

    with pytest.raises(BadRequest) as err:
        await complete(plan())
    assert err.value.param == param and err.value.status == 400


def test_bad_legacy_shapes_are_400s_naming_the_field() -> None:
    for body, param in ((dict(functions=[{"name": "has space"}]), "functions[0].name"),
                        (dict(functions=[]), "functions"),
                        (dict(function_call="required", functions=[ADD_FN]), "function_call")):
        with pytest.raises(BadRequest) as err:
            req(**body)
        assert err.value.param == param, (body, err.value.message)
    with pytest.raises(BadRequest) as err:
        parse_request(ChatCompletionRequest, {"messages": [{"role": "function", "content": "4"}]})
    assert err.value.param.startswith("messages[0]") and "name" in err.value.message


def test_legacy_history_becomes_tool_calls_with_stable_ids() -> None:
    messages = [
        {"role": "user", "content": "2+3, then 4+5?"},
        {"role": "assistant", "content": None, "function_call": {"name": "add", "arguments": '{"a": 2, "b": 3}'}},
        {"role": "function", "name": "add", "content": "5"},
        {"role": "assistant", "content": None, "function_call": {"name": "add", "arguments": {"a": 4, "b": 5}}},
        {"role": "function", "name": "add", "content": "9"},
        {"role": "function", "name": "lonely", "content": "no call before me"},
    ]
    out = to_tools_request(parse_request(ChatCompletionRequest, {"messages": messages}))
    roles = [m.role for m in out.messages]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "tool"]
    first, second = out.messages[1].tool_calls[0], out.messages[3].tool_calls[0]
    assert (first.id, first.function.name, first.function.arguments) == ("call00001", "add", '{"a": 2, "b": 3}')
    assert json.loads(second.function.arguments) == {"a": 4, "b": 5} and second.id == "call00003"
    assert [m.tool_call_id for m in out.messages if m.role == "tool"] == ["call00001", "call00003", "call00005"]
    assert out.messages[2].name == "add" and out.messages[1].function_call is None
    # the same history gives the same ids in the next request (the prompt prefix, and its cache, hold)
    again = to_tools_request(parse_request(ChatCompletionRequest, {"messages": messages + [
        {"role": "user", "content": "thanks"}]}))
    assert [m.model_dump() for m in again.messages[:6]] == [m.model_dump() for m in out.messages]
    assert all(len(legacy_call_id(i)) == 9 and legacy_call_id(i).isalnum() for i in (0, 99_999, 100_000, 10**7))


def test_planning_errors_name_the_legacy_fields() -> None:
    assert legacy_param("tools[3].function.parameters.properties") == "functions[3].parameters.properties"
    assert legacy_param("tools[0].function.name") == "functions[0].name"
    assert legacy_param("tools") == "functions" and legacy_param("tool_choice") == "function_call"
    assert legacy_param("messages[2].content") == "messages[2].content" and legacy_param(None) is None


# ---------------------------------------------------------------- units: the answer


def _completion(calls: list[tuple[str, str]], finish: str) -> ChatCompletion:
    return ChatCompletion(id="c", created=0, model="m", usage=Usage(prompt_tokens=1, completion_tokens=1,
                                                                    total_tokens=2),
                          choices=[Choice(index=0, finish_reason=finish, message=ResponseMessage(
                              content=None, tool_calls=[ResponseToolCall(id=f"call_{i}", function=ResponseFunction(
                                  name=n, arguments=a)) for i, (n, a) in enumerate(calls)] or None))])


async def _value(x):
    return x


async def test_answer_in_the_function_call_shape() -> None:
    out = await complete(_value(_completion([("add", '{"a": 1, "b": 2}')], "tool_calls")))
    msg = out.model_dump(mode="json")["choices"][0]
    assert msg["finish_reason"] == "function_call"
    assert msg["message"]["function_call"] == {"name": "add", "arguments": '{"a": 1, "b": 2}'}
    assert msg["message"]["tool_calls"] is None
    plain = (await complete(_value(_completion([], "length")))).model_dump(mode="json")["choices"][0]
    assert plain["finish_reason"] == "length" and "function_call" not in plain["message"]
    with pytest.raises(InternalError):
        await complete(_value(_completion([("add", "{}"), ("add", "{}")], "tool_calls")))

    async def failing():
        raise BadRequest("bad", param="tools[1].function.parameters")

    with pytest.raises(BadRequest) as err:
        await complete(failing())
    assert err.value.param == "functions[1].parameters"


async def test_stream_in_the_function_call_shape() -> None:
    def chunk(delta: Delta, finish: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id="c", created=0, model="m",
                                   choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)])

    async def chunks():
        yield chunk(Delta(role="assistant", content=""))
        yield chunk(Delta(tool_calls=[DeltaToolCall(index=0, id="call_1", type="function",
                                                    function=DeltaFunction(name="add"))]))
        yield chunk(Delta(tool_calls=[DeltaToolCall(index=0, function=DeltaFunction(arguments='{"a": 1'))]))
        yield chunk(Delta(tool_calls=[DeltaToolCall(index=0, function=DeltaFunction(arguments=', "b": 2}'))]))
        yield chunk(Delta(), "tool_calls")

    out = [c.model_dump(mode="json")["choices"][0] async for c in stream(chunks())]
    assert "function_call" not in out[0]["delta"]
    calls = [c["delta"]["function_call"] for c in out[1:4]]
    assert calls[0] == {"name": "add", "arguments": ""} and all(c["name"] is None for c in calls[1:])
    assert "".join(c["arguments"] for c in calls) == '{"a": 1, "b": 2}'
    assert all(c["delta"]["tool_calls"] is None for c in out) and out[-1]["finish_reason"] == "function_call"


# ---------------------------------------------------------------- the real proxy, through the openai SDK


def _check_call(call, schema: dict) -> None:
    assert call is not None, "no function_call"
    jsonschema.validate(json.loads(call.arguments), schema)


@pytest.mark.integration
def test_sdk_functions_named_call(client: OpenAI) -> None:
    res = client.chat.completions.create(model=MODEL, messages=ASK, functions=[WEATHER_FN, ADD_FN],
                                         function_call={"name": "get_weather"}, max_tokens=150, temperature=0.7,
                                         seed=11)
    choice = res.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None and choice.message.function_call.name == "get_weather"
    _check_call(choice.message.function_call, WEATHER_FN["parameters"])


@pytest.mark.integration
def test_sdk_functions_streamed_call(client: OpenAI) -> None:
    name, arguments, finish, deltas = "", "", None, 0
    for chunk in client.chat.completions.create(model=MODEL, messages=ASK, functions=[WEATHER_FN],
                                                function_call={"name": "get_weather"}, max_tokens=150,
                                                temperature=0.7, seed=11, stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        assert not delta.tool_calls
        if delta.function_call is not None:
            deltas += 1
            if delta.function_call.name:
                assert not name, "the name is sent once"
                name = delta.function_call.name
            arguments += delta.function_call.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "function_call" and name == "get_weather" and deltas >= 1
    jsonschema.validate(json.loads(arguments), WEATHER_FN["parameters"])


@pytest.mark.integration
def test_sdk_functions_auto_none_and_legacy_history(client: OpenAI) -> None:
    auto = client.chat.completions.create(model=MODEL, messages=ASK, functions=[WEATHER_FN], max_tokens=150,
                                          temperature=0.7, seed=3)
    msg = auto.choices[0].message
    assert msg.tool_calls is None
    if msg.function_call is not None:  # the model may answer in words; a call it makes is valid
        assert auto.choices[0].finish_reason == "function_call"
        _check_call(msg.function_call, WEATHER_FN["parameters"])
    none = client.chat.completions.create(model=MODEL, messages=ASK, functions=[WEATHER_FN], function_call="none",
                                          max_tokens=8, temperature=0)
    assert none.choices[0].message.function_call is None and none.choices[0].finish_reason in ("stop", "length")
    history = [*ASK,
               {"role": "assistant", "content": None,
                "function_call": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}},
               {"role": "function", "name": "get_weather", "content": "22 degrees, sunny"},
               {"role": "user", "content": "And in Lyon?"}]
    again = client.chat.completions.create(model=MODEL, messages=history, functions=[WEATHER_FN],
                                           function_call={"name": "get_weather"}, max_tokens=150, temperature=0.7,
                                           seed=5)
    assert again.choices[0].finish_reason == "function_call"
    _check_call(again.choices[0].message.function_call, WEATHER_FN["parameters"])
    # the history alone (no functions in the request) renders too
    words = client.chat.completions.create(model=MODEL, messages=history, max_tokens=4, temperature=0)
    assert words.choices[0].message.function_call is None


@pytest.mark.integration
def test_sdk_legacy_errors_are_400s(client: OpenAI, endpoint_proxy) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=ASK, functions=[WEATHER_FN],
                                       tools=[{"type": "function", "function": ADD_FN}], max_tokens=4)
    assert err.value.param == "functions"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=ASK, function_call="auto", max_tokens=4)
    assert err.value.param == "function_call"
    bad = {**WEATHER_FN, "parameters": {"type": "object", "properties": {"x": {"type": "frobnicate"}}}}
    status, _, body = http("POST", endpoint_proxy.base_url + "/chat/completions",
                           {"messages": ASK, "functions": [ADD_FN, bad], "function_call": {"name": "get_weather"},
                            "max_tokens": 4, "stream": True})
    assert status == 400 and json.loads(body)["error"]["param"].startswith("functions[1]"), body


def test_openapi_describes_the_legacy_shapes() -> None:
    from oaiproxy.api.openapi import openapi_document

    schemas = openapi_document()["components"]["schemas"]
    request = schemas["ChatCompletionRequest"]["properties"]
    assert request["functions"].get("description") and request["function_call"].get("description")
    assert "function_call" in schemas["ResponseMessage"]["properties"]
    assert "function_call" in schemas["Delta"]["properties"]
    assert "function_call" in json.dumps(schemas["Choice"]["properties"]["finish_reason"])
