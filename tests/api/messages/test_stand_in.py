"""The Messages surface through the official anthropic SDK, against a scripted llama-server stand-in:
the answer shapes, the event sequence, stop reasons, usage, errors and auth. No model needed."""

from __future__ import annotations

import json

import anthropic
import pytest

from tests.api.messages.conftest import CALL, KEY, MODEL, WEATHER, Proxy

USER = [{"role": "user", "content": "Weather in Paris?"}]


async def test_text_answer(stand_in_proxy: Proxy) -> None:
    msg = await stand_in_proxy.sdk.messages.create(model=MODEL, max_tokens=20, messages=USER)
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL and msg.id.startswith("msg_")
    assert [(b.type, b.text) for b in msg.content] == [("text", "Hello there.")]  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    # llama-server read 30 prompt tokens, 10 from its cache: Anthropic counts those apart
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.output_tokens) == (20, 10, 2)
    body = stand_in_proxy.script.bodies[-1]
    assert body["n_predict"] == 20 and "<|im_start|>user\nWeather in Paris?" in body["prompt"]


async def test_tool_use_answer_and_its_input_object(stand_in_proxy: Proxy) -> None:
    stand_in_proxy.script.pieces = CALL
    msg = await stand_in_proxy.sdk.messages.create(model=MODEL, max_tokens=50, messages=USER, tools=[WEATHER],
                                                   tool_choice={"type": "any"})
    assert msg.stop_reason == "tool_use"
    (block,) = msg.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}
    assert block.id
    body = stand_in_proxy.script.bodies[-1]
    assert "get_weather" in body["prompt"] and body.get("grammar")  # the call is enforced


@pytest.mark.parametrize("mode", ["whole", "incremental"])
async def test_stream_events_and_accumulation(aiohttp_client, aiohttp_server, templates_dir, mode: str) -> None:
    from tests.api.messages.conftest import _proxy

    p = await _proxy(aiohttp_client, aiohttp_server, templates_dir, stream_tool_calls=mode)
    p.script.pieces = ["Let me check. ", *CALL]
    args = dict(model=MODEL, max_tokens=50, messages=USER, tools=[WEATHER])
    whole = await p.sdk.messages.create(**args)  # type: ignore[call-overload]
    async with p.sdk.messages.stream(**args) as stream:  # type: ignore[arg-type]
        types = [event.type async for event in stream]
        final = await stream.get_final_message()
    await p.sdk.close()
    assert [b.model_dump(exclude={"id"}) for b in final.content] == [b.model_dump(exclude={"id"})
                                                                     for b in whole.content]
    assert all(b.id for b in final.content if b.type == "tool_use")
    assert final.stop_reason == whole.stop_reason == "tool_use"
    assert final.content[1].input == {"city": "Paris"}  # type: ignore[union-attr]
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens
    # the SDK's own events (text, input_json) come between the raw ones; the raw order is Anthropic's
    raw = [t for t in types if t in ("message_start", "content_block_start", "content_block_delta",
                                     "content_block_stop", "message_delta", "message_stop")]
    assert raw[0] == "message_start" and raw[-2:] == ["message_delta", "message_stop"]
    assert raw.count("content_block_start") == raw.count("content_block_stop") == 2


async def test_raw_event_sequence_names_every_event(stand_in_proxy: Proxy) -> None:
    resp = await stand_in_proxy.http.post("/v1/messages", json={"model": MODEL, "max_tokens": 5, "messages": USER,
                                                                "stream": True})
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    text = await resp.text()
    assert "[DONE]" not in text
    events = []
    for chunk in text.strip().split("\n\n"):
        name, data = chunk.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        payload = json.loads(data[6:])
        assert payload["type"] == name[7:]
        events.append(payload)
    assert [e["type"] for e in events] == ["message_start", "ping", "content_block_start", "content_block_delta",
                                           "content_block_delta", "content_block_stop", "message_delta",
                                           "message_stop"]
    start = events[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["output_tokens"] == 0
    assert events[2] == {"type": "content_block_start", "index": 0,
                         "content_block": {"type": "text", "text": "", "citations": None}}
    assert events[3]["delta"] == {"type": "text_delta", "text": "Hello"}
    assert events[6]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[6]["usage"]["output_tokens"] == 2 and events[6]["usage"]["input_tokens"] == 20


async def test_max_tokens_and_stop_sequences(stand_in_proxy: Proxy) -> None:
    stand_in_proxy.script.final = {"stop_type": "limit"}
    msg = await stand_in_proxy.sdk.messages.create(model=MODEL, max_tokens=2, messages=USER)
    assert msg.stop_reason == "max_tokens"
    stand_in_proxy.script.final = {"stop_type": "word", "stopping_word": "END"}
    msg = await stand_in_proxy.sdk.messages.create(model=MODEL, max_tokens=9, messages=USER, stop_sequences=["END"],
                                                   # the SDK (2.x) dropped these arguments; the API still takes them
                                                   extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 7})
    body = stand_in_proxy.script.bodies[-1]
    assert "END" in body["stop"] and (body["temperature"], body["top_p"], body["top_k"]) == (0.5, 0.9, 7)
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "END"
    async with stand_in_proxy.sdk.messages.stream(model=MODEL, max_tokens=9, messages=USER,
                                                  stop_sequences=["END"]) as stream:
        streamed = await stream.get_final_message()
    assert streamed.stop_reason == "stop_sequence" and streamed.stop_sequence == "END"


async def test_history_with_tool_use_and_results(stand_in_proxy: Proxy) -> None:
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "text", "text": "sunny, 21 C"}]},
                                     {"type": "text", "text": "And tomorrow?"}]},
        {"role": "user", "content": "Answer briefly."},
    ]
    await stand_in_proxy.sdk.messages.create(model=MODEL, max_tokens=9, messages=history, tools=[WEATHER],
                                             system=[{"type": "text", "text": "Be terse."}])
    prompt = stand_in_proxy.script.bodies[-1]["prompt"]
    assert prompt.index("Be terse.") < prompt.index("Weather in Paris?") < prompt.index('"city": "Paris"')
    assert prompt.index('"city": "Paris"') < prompt.index("sunny, 21 C") < prompt.index("And tomorrow?")
    assert "And tomorrow?\n\nAnswer briefly." in prompt  # consecutive user turns are one turn
    await stand_in_proxy.sdk.messages.create(model=MODEL, max_tokens=9, messages=[
        *history[:2], {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                    "content": "no such city", "is_error": True}]}],
        tools=[WEATHER])
    assert "Error: no such city" in stand_in_proxy.script.bodies[-1]["prompt"]


async def test_a_system_message_after_a_user_turn(stand_in_proxy: Proxy) -> None:
    """Claude Code 2.1 sends its environment as a ``system`` message after the first user turn."""
    await stand_in_proxy.sdk.messages.create(model=MODEL, max_tokens=9, messages=[
        {"role": "user", "content": "List the files."},
        {"role": "system", "content": [{"type": "text", "text": "# Environment: /tmp/work"}]}],
        system="Be terse.")
    prompt = stand_in_proxy.script.bodies[-1]["prompt"]
    assert prompt.index("Be terse.") < prompt.index("List the files.") < prompt.index("# Environment: /tmp/work")
    status, error = await _error(stand_in_proxy, {"model": MODEL, "max_tokens": 5, "messages": [
        *USER, {"role": "assistant", "content": "ok"}, {"role": "system", "content": "x"}]})
    assert status == 400 and "messages[2].role" in error["message"]
    status, error = await _error(stand_in_proxy, {"model": MODEL, "max_tokens": 5, "messages": [
        *USER, {"role": "system", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]})
    assert status == 400 and "messages[1]" in error["message"]


async def test_count_tokens_counts_the_planned_prompt(stand_in_proxy: Proxy) -> None:
    plain = await stand_in_proxy.sdk.messages.count_tokens(model=MODEL, messages=USER)
    with_tools = await stand_in_proxy.sdk.messages.count_tokens(model=MODEL, messages=USER, tools=[WEATHER])
    prompt = stand_in_proxy.script.bodies[-1]["content"]
    assert with_tools.input_tokens == len(prompt) and "get_weather" in prompt  # one token per character here
    assert with_tools.input_tokens > plain.input_tokens > 0


async def _error(stand_in_proxy: Proxy, body: object, path: str = "/v1/messages",
                 headers: dict[str, str] | None = None) -> tuple[int, dict]:
    resp = await stand_in_proxy.http.post(path, json=body, headers=headers)
    data = await resp.json()
    assert set(data) == {"type", "error"} and data["type"] == "error" and set(data["error"]) == {"type", "message"}
    return resp.status, data["error"]


@pytest.mark.parametrize("body, field", [
    ({"model": MODEL, "messages": USER}, "max_tokens"),
    ({"model": MODEL, "max_tokens": 0, "messages": USER}, "max_tokens"),
    ({"max_tokens": 5, "messages": USER}, "model"),
    ({"model": MODEL, "max_tokens": 5, "messages": []}, "messages"),
    ({"model": MODEL, "max_tokens": 5, "messages": USER, "temperature": 1.5}, "temperature"),
    ({"model": MODEL, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]},
     "messages[0].content[0]"),
    ({"model": MODEL, "max_tokens": 5, "messages": USER, "tools": [{"name": "x", "input_schema": {"type": "string"}}]},
     "tools[0].input_schema"),
    ({"model": MODEL, "max_tokens": 5, "messages": USER,
      "tools": [{"name": "x", "input_schema": {"type": "object", "properties": {"a": {"type": "nope"}}}}]},
     "tools[0].input_schema"),
    ({"model": MODEL, "max_tokens": 5, "messages": USER, "tools": [WEATHER, WEATHER]}, "tools[1].name"),
    ({"model": MODEL, "max_tokens": 5, "messages": USER, "tools": [{"type": "web_search_20250305",
                                                                     "name": "web_search"}]}, "tools[0]"),
    ({"model": MODEL, "max_tokens": 5, "messages": USER, "tools": [WEATHER],
      "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice"),
    ({"model": MODEL, "max_tokens": 5, "messages": USER, "tool_choice": {"type": "any"}}, "tool_choice"),
    ({"model": MODEL, "max_tokens": 5, "messages": USER, "tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ({"model": MODEL, "max_tokens": 5, "messages": USER, "stop_sequences": [""]}, "stop_sequences"),
    ({"model": MODEL, "max_tokens": 5, "messages": USER, "mcp_servers": [{"url": "x"}]}, "mcp_servers"),
])
async def test_bad_requests_get_anthropic_errors(stand_in_proxy: Proxy, body: dict, field: str) -> None:
    status, error = await _error(stand_in_proxy, body)
    assert status == 400 and error["type"] == "invalid_request_error"
    assert field in error["message"], error
    assert "function.parameters" not in error["message"] and "'required'" not in error["message"]


async def test_deep_history_input_names_the_block(stand_in_proxy: Proxy) -> None:
    deep: dict = {}
    node = deep
    for _ in range(120):
        node["a"] = {}
        node = node["a"]
    status, error = await _error(stand_in_proxy, {"model": MODEL, "max_tokens": 5, "tools": [WEATHER], "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"},
                                          {"type": "tool_use", "id": "t", "name": "get_weather", "input": deep}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]})
    assert status == 400 and "messages[1].content[1].input" in error["message"], error


async def test_errors_of_the_http_layer_are_anthropic_shaped(stand_in_proxy: Proxy) -> None:
    resp = await stand_in_proxy.http.post("/v1/messages", data=b"{not json",
                                          headers={"Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"]["type"] == "invalid_request_error"
    status, error = await _error(stand_in_proxy, {"model": "claude-x", "max_tokens": 5, "messages": USER})
    assert status == 404 and error["type"] == "not_found_error" and "claude-x" in error["message"]
    status, error = await _error(stand_in_proxy, {}, path="/v1/messages/batches")
    assert status == 404 and error["type"] == "not_found_error"
    # the OpenAI surfaces keep OpenAI's shape
    resp = await stand_in_proxy.http.post("/v1/chat/completions", json={"messages": []})
    assert resp.status == 400 and set((await resp.json())["error"]) == {"message", "type", "param", "code"}


async def test_sdk_raises_its_typed_errors(stand_in_proxy: Proxy) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        await stand_in_proxy.sdk.messages.create(model=MODEL, max_tokens=5, messages=USER, extra_body={"top_k": -1})
    assert err.value.status_code == 400 and "top_k" in err.value.message
    assert err.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        await stand_in_proxy.sdk.messages.create(model="claude-nope", max_tokens=5, messages=USER)


async def test_a_failure_mid_stream_is_an_error_event(stand_in_proxy: Proxy) -> None:
    stand_in_proxy.script.pieces = ['<tool_call>\n{"name": "get_weather", ', '"arguments": {"city": 5}}\n</tool_call>']
    resp = await stand_in_proxy.http.post("/v1/messages", json={"model": MODEL, "max_tokens": 50, "messages": USER,
                                                                "tools": [WEATHER], "stream": True})
    assert resp.status == 200
    last = (await resp.text()).strip().split("\n\n")[-1].split("\n")
    assert last[0] == "event: error"
    payload = json.loads(last[1][6:])
    assert payload["type"] == "error" and payload["error"]["type"] == "api_error"
    with pytest.raises(anthropic.APIStatusError):
        async with stand_in_proxy.sdk.messages.stream(model=MODEL, max_tokens=50, messages=USER,
                                                      tools=[WEATHER]) as stream:
            await stream.get_final_message()


async def test_auth_takes_x_api_key_or_bearer(keyed_stand_in_proxy: Proxy) -> None:
    p = keyed_stand_in_proxy
    msg = await p.sdk.messages.create(model=MODEL, max_tokens=5, messages=USER)  # x-api-key, anthropic-version
    assert msg.content
    bearer = anthropic.AsyncAnthropic(base_url=str(p.http.server.make_url("")), auth_token=KEY, max_retries=0)
    assert (await bearer.messages.create(model=MODEL, max_tokens=5, messages=USER)).content
    await bearer.close()
    wrong = anthropic.AsyncAnthropic(base_url=str(p.http.server.make_url("")), api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as err:
        await wrong.messages.create(model=MODEL, max_tokens=5, messages=USER)
    assert err.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    await wrong.close()
    # the OpenAI routes take x-api-key too, and answer a missing key in OpenAI's shape
    resp = await p.http.get("/v1/models", headers={"x-api-key": KEY})
    assert resp.status == 200
    resp = await p.http.get("/v1/models")
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "invalid_api_key"


async def test_output_config_format_is_the_json_schema_grammar(stand_in_proxy: Proxy) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    stand_in_proxy.script.pieces = ['{"city": ', '"Paris"}']
    msg = await stand_in_proxy.sdk.messages.create(model=MODEL, max_tokens=30, messages=USER,
                                                   output_config={"format": {"type": "json_schema", "schema": schema}})
    assert json.loads(msg.content[0].text) == {"city": "Paris"}  # type: ignore[union-attr]
    assert "city" in stand_in_proxy.script.bodies[-1]["grammar"]
    status, error = await _error(stand_in_proxy, {"model": MODEL, "max_tokens": 5, "messages": USER, "output_config": {
        "format": {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {"type": "nope"}}}}}})
    assert status == 400 and "output_config.format.schema" in error["message"], error
