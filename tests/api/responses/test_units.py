"""The Responses surface without a server: request rules, translation onto the conversation, and the event
sequence the stream writer makes of the engine's neutral events."""

from __future__ import annotations

from typing import Any

import pytest

from oaiproxy.api.protocol import parse_request
from oaiproxy.api.responses.protocol import ResponsesRequest
from oaiproxy.api.responses.serving import ResponsesEngine, _StreamWriter
from oaiproxy.api.responses.translate import to_conversation
from oaiproxy.conversation.model import NamedToolChoice, ToolCall
from oaiproxy.dialects.base import ContentDelta, ToolCallDelta
from oaiproxy.engine import CallDone, Finished, Started, Step, TokenUsage
from oaiproxy.errors import BadRequest

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def conv(**body: Any):
    req = parse_request(ResponsesRequest, {"model": "m", **body})
    req.check_supported()
    return to_conversation(req)


def refused(**body: Any) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        conv(**body)
    return info.value


def test_a_string_input_is_one_user_message_after_the_instructions() -> None:
    c = conv(input="Hi", instructions="Be brief.")
    assert c.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert c.tools == [] and c.tool_choice == "none"


def test_items_become_turns_calls_joined_and_outputs_tool_messages() -> None:
    c = conv(input=[
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in "},
                                                         {"type": "input_text", "text": "Paris and Rome?"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Two cities."}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": {"city": "Rome"}},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
    ], tools=[WEATHER])
    assert c.messages[:2] == [{"role": "system", "content": "Use tools."},
                              {"role": "user", "content": "Weather in Paris and Rome?"}]
    turn = c.messages[2]
    assert turn["role"] == "assistant" and turn["reasoning_content"] == "Two cities."
    assert [(t["id"], t["function"]["arguments"]) for t in turn["tool_calls"]] == [
        ("c1", '{"city": "Paris"}'), ("c2", '{"city": "Rome"}')]
    assert c.messages[3:] == [{"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                              {"role": "tool", "tool_call_id": "c2", "content": "rain"}]
    assert [t.name for t in c.tools] == ["get_weather"] and c.tool_choice == "auto"


def test_tool_choice_forms() -> None:
    assert conv(input="x", tools=[WEATHER], tool_choice="required").tool_choice == "required"
    assert conv(input="x", tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}).tool_choice \
        == NamedToolChoice("get_weather")
    other = {**WEATHER, "name": "other"}
    allowed = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "other"}]}
    c = conv(input="x", tools=[WEATHER, other], tool_choice=allowed)
    assert [t.name for t in c.tools] == ["other"] and c.tool_choice == "required"


def test_text_format_json_schema_is_the_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    c = conv(input="x", text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}})
    assert (c.response_format.type, c.response_format.strict, c.response_format.name) == ("json_schema", True, "out")
    assert c.response_format.schema is not None and c.response_format.schema["properties"] == schema["properties"]
    assert refused(input="x", text={"format": {"type": "json_schema", "name": "out"}}).param == "text.format.schema"


@pytest.mark.parametrize("body, param, words", [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type", "'web_search' tool"),
    ({"tools": [WEATHER, {"type": "file_search", "vector_store_ids": ["v"]}]}, "tools[1].type", "file_search"),
    ({"background": True}, "background", "background responses"),
    ({"conversation": "conv_1", "previous_response_id": "resp_1"}, "conversation", "Mutually exclusive"),
    ({"conversation": {"name": "c"}}, "conversation.id", "conversation id"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]", "item references"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:"}]}]}, "input[0].content",
     "input_image"),
    ({"tools": [{**WEATHER, "parameters": {"type": "object", "properties": {"city": {"type": "nope"}}}}]},
     "tools[0].parameters", "tools[0].parameters"),
    ({"tools": [{**WEATHER, "name": "bad name"}]}, "tools[0].name", "tools[0].name"),
    ({"tools": [{"type": "namespace", "name": "crm", "tools": [WEATHER, {"type": "custom", "name": "x"}]}]},
     "tools[0].tools[1].type", "'custom' tool"),
    ({"tools": [{"type": "namespace", "name": "crm", "tools": [{**WEATHER, "parameters": {"type": "nope"}}]}]},
     "tools[0].tools[0].parameters", "tools[0].tools[0].parameters"),
    ({"tools": [{"type": "namespace", "name": "crm", "tools": []}]}, "tools[0].tools", "tools[0].tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "missing"}}, "tool_choice", "missing"),
    ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto",
                                          "tools": [{"type": "function", "name": "nope"}]}},
     "tool_choice.tools", "nope"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "get_weather", "arguments": "[" * 101 + "]" * 101}]},
     "input[0].arguments", "nested"),
])
def test_bad_input_names_this_apis_field(body: dict[str, Any], param: str, words: str) -> None:
    exc = refused(**{"input": "x", **body})
    assert exc.param == param and words in exc.message and exc.status == 400, (exc.param, exc.message)


def test_a_stored_chain_is_history_and_errors_in_it_name_previous_response_id() -> None:
    from pydantic import TypeAdapter

    from oaiproxy.api.responses.protocol import InputItem

    history = TypeAdapter(list[InputItem]).validate_python([
        {"id": "msg_1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Paris?"}]},
        {"id": "fc_1", "type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}",
         "status": "completed"}])
    req = parse_request(ResponsesRequest, {"input": [{"type": "function_call_output", "call_id": "c1",
                                                      "output": "sunny"}], "instructions": "Be brief.",
                                           "tools": [WEATHER], "previous_response_id": "resp_1"})
    c = to_conversation(req, history=history)
    assert [m["role"] for m in c.messages] == ["system", "user", "assistant", "tool"]
    assert c.messages[2]["tool_calls"][0]["id"] == "c1" and c.messages[3]["content"] == "sunny"

    bad = parse_request(ResponsesRequest, {"input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "data:"}]}]})
    with pytest.raises(BadRequest) as info:  # the client's own items keep their own indices after the history
        to_conversation(bad, history=history)
    assert info.value.param == "input[0].content"
    broken = TypeAdapter(list[InputItem]).validate_python([
        {"type": "message", "role": "user", "content": [{"type": "input_audio"}]}])
    with pytest.raises(BadRequest) as info:
        to_conversation(parse_request(ResponsesRequest, {"input": "x"}), history=broken)
    assert info.value.param == "previous_response_id"


def test_stored_input_gives_every_item_an_id_and_parts() -> None:
    from oaiproxy.api.responses.serving import stored_input

    req = parse_request(ResponsesRequest, {"input": [
        {"role": "assistant", "content": "Earlier"}, {"type": "message", "id": "msg_x", "role": "user",
                                                      "content": "Now"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"}]})
    items = stored_input(req)
    assert items[0]["id"].startswith("msg_") and items[0]["content"] == [{"type": "output_text", "text": "Earlier"}]
    assert items[1]["id"] == "msg_x" and items[1]["content"] == [{"type": "input_text", "text": "Now"}]
    assert items[2]["id"].startswith("fco_") and items[2]["status"] == "completed"
    assert stored_input(parse_request(ResponsesRequest, {"input": "Hi"}))[0]["role"] == "user"


def test_parse_errors_name_the_field() -> None:
    with pytest.raises(BadRequest) as info:
        parse_request(ResponsesRequest, {"model": "m"})
    assert info.value.param == "input"
    with pytest.raises(BadRequest) as info:
        parse_request(ResponsesRequest, {"input": "x", "max_output_tokens": 0})
    assert info.value.param == "max_output_tokens"


# ---------------------------------------------------------------- the event sequence


class _Core:
    model_id = "m"
    tool_extra_keys = False


def writer(**body: Any) -> _StreamWriter:
    req = parse_request(ResponsesRequest, {"input": "x", **body})
    return _StreamWriter(ResponsesEngine(_Core())._shell(req, "resp_1", 0, "in_progress"),  # type: ignore[arg-type]
                         req.namespaced())


def run(w: _StreamWriter, events: list[Any]) -> list[Any]:
    return [e for ev in events for e in w.on(ev)]


CALL = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')


def test_text_then_a_whole_call_in_the_responses_order() -> None:
    out = run(writer(), [Started(), Step((ContentDelta("I will "),)), Step((ContentDelta("check."),)),
                         CallDone(0, CALL), Finished("tool_calls", TokenUsage(5, 7, 2))])
    assert [e.type for e in out] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in out] == list(range(len(out)))
    assert out[0].response.status == "in_progress" and out[0].response.output == []
    assert out[2].item.content == [] and out[6].text == "I will check."
    assert out[9].item.arguments == "" and out[11].arguments == CALL.arguments and out[11].name == "get_weather"
    done = out[-1].response
    assert done.status == "completed" and [i.type for i in done.output] == ["message", "function_call"]
    assert done.output[1].call_id == "call_1" and done.output[1].status == "completed"
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.total_tokens,
            done.usage.input_tokens_details.cached_tokens) == (5, 7, 12, 2)


def test_incremental_call_deltas_and_a_cut_answer_is_incomplete() -> None:
    out = run(writer(max_output_tokens=9), [
        Started(), Step((ToolCallDelta(0, id="call_1", name="get_weather", arguments='{"ci'),)),
        Step((ToolCallDelta(0, arguments='ty": "Pa'),)), Finished("length", TokenUsage(3, 9))])
    kinds = [e.type for e in out]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta", "response.function_call_arguments.delta",
                     "response.function_call_arguments.done", "response.output_item.done", "response.incomplete"]
    final = out[-1].response
    assert final.status == "incomplete" and final.incomplete_details.reason == "max_output_tokens"
    assert final.output[0].arguments == '{"city": "Pa' and final.output[0].status == "incomplete"


@pytest.mark.parametrize("body, param", [
    ({"input": [{"type": "function_call", "name": "x", "arguments": "{}"}]}, "input[0].call_id"),
    ({"input": [{"type": "bogus"}]}, "input[0]"),
    ({"input": [{"role": "user"}]}, "input[0].content"),
    ({"input": 5}, "input"),
    ({"input": "x", "tools": [{"type": "function", "name": "f", "parameters": "nope"}]}, "tools[0].parameters"),
])
def test_malformed_items_name_the_item(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_request(ResponsesRequest, body).function_tools()
    assert info.value.param == param, info.value.message


def test_reasoning_comes_first_as_its_own_item() -> None:
    from oaiproxy.engine import ReasoningStep

    out = run(writer(), [Started(), ReasoningStep("Let me"), ReasoningStep(" think."), Step((ContentDelta("Hi"),)),
                         Finished("stop", TokenUsage(4, 9, 0, reasoning_tokens=6))])
    assert [e.type for e in out] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.reasoning_text.delta",
        "response.reasoning_text.delta", "response.reasoning_text.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"]
    assert out[5].text == "Let me think." and out[6].item.type == "reasoning"
    final = out[-1].response
    assert [i.type for i in final.output] == ["reasoning", "message"]
    assert final.output[0].content[0].text == "Let me think." and final.output[1].content[0].text == "Hi"
    assert final.usage.output_tokens_details.reasoning_tokens == 6


AGENTS = {"type": "namespace", "name": "agents", "description": "Sub-agents",
          "tools": [{**WEATHER, "name": "spawn"}, WEATHER]}


def test_a_namespace_tool_lends_its_functions_qualified_names() -> None:
    """Codex CLI's sub-agent tools: a namespace's functions are tools of their own, named ``namespace.name``, so
    they never clash with a plain tool of the same name; a past call carries its namespace back."""
    c = conv(input=[{"role": "user", "content": "Go"},
                    {"type": "function_call", "call_id": "c1", "name": "spawn", "namespace": "agents",
                     "arguments": '{"city": "Paris"}'},
                    {"type": "function_call_output", "call_id": "c1", "output": "ok"}],
             tools=[WEATHER, AGENTS], tool_choice={"type": "function", "name": "agents.get_weather"})
    assert [t.name for t in c.tools] == ["get_weather", "agents.spawn", "agents.get_weather"]
    assert c.messages[1]["tool_calls"][0]["function"]["name"] == "agents.spawn"
    assert c.tool_choice == NamedToolChoice("agents.get_weather")


def test_calls_to_namespaced_functions_come_back_with_their_namespace() -> None:
    w = writer(tools=[WEATHER, AGENTS])
    events = run(w, [Started(), CallDone(0, ToolCall("call_1", "agents.spawn", '{"city": "Paris"}')),
                     CallDone(1, ToolCall("call_2", "get_weather", '{"city": "Rome"}')),
                     Finished("tool_calls", TokenUsage(3, 9))])
    done = [e.item.model_dump(mode="json") for e in events if e.type == "response.output_item.done"]
    assert [(d["name"], d.get("namespace")) for d in done] == [("spawn", "agents"), ("get_weather", None)]
    assert "namespace" not in done[1]  # a plain function's call has no namespace key
    incremental = run(writer(tools=[AGENTS]), [Started(), Step((ToolCallDelta(0, id="call_1", name="agents.spawn",
                                                                              arguments='{"city": "P"}'),)),
                                               Finished("tool_calls", TokenUsage(3, 9))])
    added = next(e for e in incremental if e.type == "response.output_item.added")
    assert (added.item.name, added.item.namespace) == ("spawn", "agents")
