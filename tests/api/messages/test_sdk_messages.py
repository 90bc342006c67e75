"""The official anthropic SDK against the real proxy on the real default model: messages.create with and
without tools, tool_choice any and named, messages.stream (text and input_json accumulation) agreeing
with the non-streamed answer, a tool round trip, count_tokens, and errors as the SDK's typed exceptions.
Whatever a 270M model writes, every tool_use names a requested tool and its input validates."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import jsonschema
import pytest

from tests._processes import ProxyProcess
from tests.api.conftest import API_KEY, MODEL

WEATHER = {"name": "get_weather", "description": "Current weather in a city.",
           "input_schema": {"type": "object",
                            "properties": {"city": {"type": "string", "maxLength": 40},
                                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                            "required": ["city", "unit"], "additionalProperties": False}}
ADD = {"name": "add", "description": "Add two integers.",
       "input_schema": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                        "required": ["a", "b"], "additionalProperties": False}}
TOOLS = [WEATHER, ADD]
SCHEMAS = {t["name"]: t["input_schema"] for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]
SEA = [{"role": "user", "content": "Write one sentence about the sea."}]
#: greedy decoding, so that the streamed and the non-streamed answer are the same answer
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def claude(endpoint_proxy: ProxyProcess) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(base_url=endpoint_proxy.url, api_key="unused", max_retries=0, timeout=120)
    yield client
    client.close()


def tool_uses(message: Any, allowed: set[str]) -> list[Any]:
    """The message's tool_use blocks, each checked: a requested tool, an input that validates."""
    uses = [b for b in message.content if b.type == "tool_use"]
    for use in uses:
        assert use.id and use.name in allowed
        assert isinstance(use.input, dict)
        jsonschema.validate(use.input, SCHEMAS[use.name])
    return uses


def test_create_text(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model=MODEL, max_tokens=16, messages=SEA, extra_body=GREEDY)
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text.strip()  # type: ignore[union-attr]
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert 0 < msg.usage.output_tokens <= 16
    assert msg.usage.input_tokens + (msg.usage.cache_read_input_tokens or 0) > 5


def test_stream_text_agrees_with_create(claude: anthropic.Anthropic) -> None:
    args: dict[str, Any] = dict(model=MODEL, max_tokens=20, messages=SEA,
                                system="You are a poet.", extra_body=GREEDY)
    whole = claude.messages.create(**args)
    with claude.messages.stream(**args) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text  # type: ignore[union-attr]
    assert [b.model_dump() for b in final.content] == [b.model_dump() for b in whole.content]
    assert final.stop_reason == whole.stop_reason and final.usage.output_tokens == whole.usage.output_tokens


def test_tool_choice_any(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model=MODEL, max_tokens=120, messages=ASK, tools=TOOLS,  # type: ignore[arg-type]
                                 tool_choice={"type": "any"}, extra_body={"temperature": 0.7})
    assert msg.stop_reason == "tool_use"
    assert tool_uses(msg, {"get_weather", "add"})


def test_named_tool_choice_one_call(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model=MODEL, max_tokens=120, tools=TOOLS,  # type: ignore[arg-type]
                                 messages=[{"role": "user", "content": "What is 2 plus 3?"}],
                                 tool_choice={"type": "tool", "name": "add", "disable_parallel_tool_use": True},
                                 extra_body=GREEDY)
    assert msg.stop_reason == "tool_use"
    assert len(tool_uses(msg, {"add"})) == 1


def test_tools_auto_without_a_call_is_valid_too(claude: anthropic.Anthropic) -> None:
    msg = claude.messages.create(model=MODEL, max_tokens=60, messages=ASK, tools=TOOLS)  # type: ignore[arg-type]
    uses = tool_uses(msg, {"get_weather", "add"})
    # A call may be followed by a second one the token limit cuts: the cut call is dropped,
    # the complete one kept, and the stop reason says max_tokens (as Anthropic's does).
    assert msg.stop_reason in (("tool_use", "max_tokens") if uses else ("end_turn", "max_tokens"))


def test_stream_input_json_accumulates_to_the_create_answer(claude: anthropic.Anthropic) -> None:
    args: dict[str, Any] = dict(model=MODEL, max_tokens=120, messages=ASK, tools=TOOLS,
                                tool_choice={"type": "tool", "name": "get_weather"}, extra_body=GREEDY)
    whole = claude.messages.create(**args)
    partials: list[str] = []
    with claude.messages.stream(**args) as stream:
        for event in stream:
            if event.type == "input_json":
                partials.append(event.partial_json)
        final = stream.get_final_message()
    assert final.stop_reason == whole.stop_reason == "tool_use"
    (streamed,), (answered,) = tool_uses(final, {"get_weather"}), tool_uses(whole, {"get_weather"})
    assert streamed.input == answered.input and streamed.name == answered.name
    assert partials and "".join(partials)  # the input arrived as input_json deltas


def test_tool_round_trip(claude: anthropic.Anthropic) -> None:
    first = claude.messages.create(model=MODEL, max_tokens=120, messages=ASK, tools=TOOLS,  # type: ignore[arg-type]
                                   tool_choice={"type": "tool", "name": "get_weather"})
    (use,) = tool_uses(first, {"get_weather"})[:1]
    history = [*ASK, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                             "content": "Sunny, 21 degrees."}]}]
    answer = claude.messages.create(model=MODEL, max_tokens=30, messages=history, tools=TOOLS,  # type: ignore[arg-type]
                                    tool_choice={"type": "none"})
    assert answer.stop_reason in ("end_turn", "max_tokens")
    assert [b.type for b in answer.content] == ["text"]


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    plain = claude.messages.count_tokens(model=MODEL, messages=SEA)
    with_tools = claude.messages.count_tokens(model=MODEL, messages=SEA, tools=TOOLS)  # type: ignore[arg-type]
    assert 5 < plain.input_tokens < with_tools.input_tokens
    msg = claude.messages.create(model=MODEL, max_tokens=1, messages=SEA)
    assert msg.usage.input_tokens + (msg.usage.cache_read_input_tokens or 0) == plain.input_tokens


def test_typed_errors(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(model=MODEL, max_tokens=10, messages=SEA,
                               tools=[{"name": "f", "input_schema": {"type": "object",
                                                                    "properties": {"a": {"type": "nope"}}}}])
    assert err.value.status_code == 400 and "tools[0].input_schema" in err.value.message
    assert err.value.body == {"type": "error", "error": {"type": "invalid_request_error",
                                                         "message": err.value.body["error"]["message"]}}  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model=MODEL, max_tokens=0, messages=SEA)
    with pytest.raises(anthropic.NotFoundError) as nf:
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=SEA)
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_api_key_as_x_api_key(guarded_proxy: ProxyProcess) -> None:
    good = anthropic.Anthropic(base_url=guarded_proxy.url, api_key=API_KEY, max_retries=0, timeout=60)
    assert good.messages.count_tokens(model=MODEL, messages=SEA).input_tokens > 0
    bad = anthropic.Anthropic(base_url=guarded_proxy.url, api_key="sk-wrong", max_retries=0, timeout=60)
    with pytest.raises(anthropic.AuthenticationError) as err:
        bad.messages.create(model=MODEL, max_tokens=5, messages=SEA)
    assert err.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    good.close()
    bad.close()


#: the README's Anthropic example, run as it is written (only the address differs)
README_EXAMPLE = '''\
import anthropic

client = anthropic.Anthropic(base_url="http://127.0.0.1:8080", api_key="unused")
weather = {"name": "get_weather", "description": "Current weather in a city.",
           "input_schema": {"type": "object", "required": ["city"],
                            "properties": {"city": {"type": "string", "maxLength": 40}}}}
message = client.messages.create(
    model="gemma-3-270m-q4_k_m", max_tokens=200, tools=[weather], tool_choice={"type": "any"},
    messages=[{"role": "user", "content": "What is the weather in Paris?"}],
)
call = next(block for block in message.content if block.type == "tool_use")
print(call.name, call.input)  # get_weather {'city': 'Paris'}, an object that validates
'''


def test_readme_example(endpoint_proxy: ProxyProcess, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    if "import anthropic" in readme:  # once the README shows it, it must be this very text
        assert README_EXAMPLE in readme
    scope: dict[str, Any] = {}
    exec(README_EXAMPLE.replace("http://127.0.0.1:8080", endpoint_proxy.url), scope)  # noqa: S102
    assert scope["message"].stop_reason == "tool_use" and scope["call"].name == "get_weather"
    jsonschema.validate(scope["call"].input, scope["weather"]["input_schema"])
    assert capsys.readouterr().out.startswith("get_weather {")
    scope["client"].close()
