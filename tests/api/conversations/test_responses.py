"""``POST /v1/responses`` with ``conversation``, through the official openai SDK on a scripted llama-server: the
conversation's items are the history (checked in the prompt the model was given), the request's input and the
response's output are appended once the response succeeded (whole answers and streams, ``store: false`` too),
a function call round trip, refusals (with ``previous_response_id``, unknown ids, duplicate items) before the
model runs, and a failed response or a failed commit leaving the conversation (and the responses) as they were."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.api.conversations.conftest import MODEL, Conv
from tests.api.messages.conftest import CALL

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def body(exc: openai.APIStatusError) -> dict[str, Any]:
    assert isinstance(exc.body, dict)
    return exc.body


async def listed(conv: Conv, cid: str) -> list[Any]:
    return [item async for item in conv.sdk.conversations.items.list(cid, order="asc")]


async def test_two_turns_read_the_conversation_and_are_appended_to_it(conv: Conv) -> None:
    made = await conv.sdk.conversations.create(items=[{"role": "user", "content": "My name is Zed."}])
    conv.script.pieces = ["Hello", " Zed."]
    first = await conv.sdk.responses.create(model=MODEL, conversation=made.id, input="Greet me.",
                                             instructions="Be brief.")
    assert first.conversation is not None and first.conversation.id == made.id
    assert first.output_text == "Hello Zed." and first.previous_response_id is None
    prompt = conv.prompt()
    turns = ["<|im_start|>system\nBe brief.", "<|im_start|>user\nMy name is Zed.", "<|im_start|>user\nGreet me."]
    at = [prompt.index(t) for t in turns]
    assert at == sorted(at)

    items = await listed(conv, made.id)
    assert [(i.type, i.role) for i in items] == [("message", "user"), ("message", "user"), ("message", "assistant")]
    assert items[1].content[0].text == "Greet me." and items[2].content[0].text == "Hello Zed."
    assert items[2].id == first.output[0].id  # the response's output item itself, its id kept

    conv.script.pieces = ["Bye", " Zed."]
    second = await conv.sdk.responses.create(model=MODEL, conversation={"id": made.id}, input="Say bye.")
    assert second.conversation is not None and second.conversation.id == made.id
    prompt = conv.prompt()
    turns = ["<|im_start|>user\nMy name is Zed.", "<|im_start|>user\nGreet me.", "<|im_start|>assistant\nHello Zed.",
             "<|im_start|>user\nSay bye."]
    at = [prompt.index(t) for t in turns]
    assert at == sorted(at) and "Be brief." not in prompt  # instructions are the request's, not the conversation's
    assert [i.id for i in await listed(conv, made.id)][:3] == [i.id for i in items]
    assert len(await listed(conv, made.id)) == 5

    # the stored response says which conversation it was part of, and lists its own input only
    kept = await conv.sdk.responses.retrieve(second.id)
    assert kept.conversation is not None and kept.conversation.id == made.id
    inputs = [i async for i in conv.sdk.responses.input_items.list(second.id)]
    assert [i.content[0].text for i in inputs] == ["Say bye."]  # type: ignore[union-attr]
    raw = await (await conv.http.get(f"/v1/responses/{second.id}")).json()
    assert raw["conversation"] == {"id": made.id}
    # a response without a conversation has no "conversation" field, as before
    plain = await (await conv.http.post("/v1/responses", json={"model": MODEL, "input": "Hi"})).json()
    assert "conversation" not in plain


async def test_a_function_call_round_trip_on_a_conversation(conv: Conv) -> None:
    made = await conv.sdk.conversations.create()
    conv.script.pieces = CALL
    first = await conv.sdk.responses.create(model=MODEL, conversation=made.id, input="Weather in Paris?",
                                             tools=[WEATHER], tool_choice="required")  # type: ignore[list-item]
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and call.arguments == '{"city": "Paris"}'

    conv.script.pieces = ["It is", " sunny."]
    second = await conv.sdk.responses.create(
        model=MODEL, conversation=made.id, tools=[WEATHER],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}])
    assert second.output_text == "It is sunny."
    prompt = conv.prompt()
    asked = prompt.index("<|im_start|>user\nWeather in Paris?")
    called = prompt.index('<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}')
    answered = prompt.index("<tool_response>\nsunny, 21 C\n</tool_response>")
    assert asked < called < answered

    items = await listed(conv, made.id)
    assert [i.type for i in items] == ["message", "function_call", "function_call_output", "message"]
    assert items[1].id == call.id and items[1].call_id == items[2].call_id == call.call_id


async def test_a_streamed_response_is_appended_before_it_is_completed(conv: Conv) -> None:
    made = await conv.sdk.conversations.create(items=[{"role": "user", "content": "Earlier."}])
    conv.script.pieces = ["Streamed", " answer."]
    events = [e async for e in await conv.sdk.responses.create(model=MODEL, conversation=made.id, input="Now.",
                                                                 stream=True)]
    assert events[0].type == "response.created" and events[0].response.conversation.id == made.id  # type: ignore[union-attr]
    assert events[-1].type == "response.completed"
    assert "<|im_start|>user\nEarlier." in conv.prompt()
    items = await listed(conv, made.id)
    assert [i.content[0].text for i in items] == ["Earlier.", "Now.", "Streamed answer."]
    assert items[-1].id == events[-1].response.output[0].id  # type: ignore[union-attr]


async def test_store_false_appends_to_the_conversation_but_keeps_no_response(conv: Conv) -> None:
    made = await conv.sdk.conversations.create()
    res = await conv.sdk.responses.create(model=MODEL, conversation=made.id, input="Off the record", store=False)
    assert res.store is False and res.conversation is not None
    with pytest.raises(openai.NotFoundError):
        await conv.sdk.responses.retrieve(res.id)
    assert [i.type for i in await listed(conv, made.id)] == ["message", "message"]


async def test_refusals_come_before_the_model_runs_and_keep_nothing(conv: Conv) -> None:
    made = await conv.sdk.conversations.create(items=[{"role": "user", "content": "Hi", "id": "msg_hi"}])
    before = await conv.sdk.responses.create(model=MODEL, input="Elsewhere")
    asked = conv.asked()
    with pytest.raises(openai.BadRequestError) as info:
        await conv.sdk.responses.create(model=MODEL, input="x", conversation=made.id, previous_response_id=before.id)
    assert body(info.value)["param"] == "conversation" and "Mutually exclusive" in body(info.value)["message"]
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as nf:
            await conv.sdk.responses.create(model=MODEL, input="x", conversation="conv_nope", stream=stream)
        assert body(nf.value)["param"] == "conversation" and body(nf.value)["code"] == "conversation_not_found"
    for sent, param in (({"conversation": {"id": 5}}, "conversation.id"),
                        ({"conversation": made.id, "input": [{"role": "user", "content": "again", "id": "msg_hi"}]},
                         "input[0].id"),
                        ({"conversation": made.id, "input": [{"role": "user", "content": "x", "id": "m" * 65}]},
                         "input[0].id"),
                        ({"conversation": made.id, "input": [{"role": "user", "content": "a", "id": "msg_2"},
                                                             {"role": "user", "content": "b", "id": "msg_2"}]},
                         "input[1].id")):
        got = await conv.http.post("/v1/responses", json={"model": MODEL, "input": "x", **sent})
        assert got.status == 400 and (await got.json())["error"]["param"] == param, sent
    assert conv.asked() == asked  # the model never ran
    assert [i.id for i in await listed(conv, made.id)] == ["msg_hi"]


async def test_a_failed_response_leaves_the_conversation_as_it_was(conv: Conv) -> None:
    made = await conv.sdk.conversations.create(items=[{"role": "user", "content": "Hi"}])
    conv.failing[0] = True
    with pytest.raises(openai.APIStatusError) as info:
        await conv.sdk.responses.create(model=MODEL, conversation=made.id, input="Doomed")
    assert info.value.status_code >= 500
    try:  # a stream fails before its first event (a plain HTTP error) or with an error event, never completed
        stream = await conv.sdk.responses.create(model=MODEL, conversation=made.id, input="Doomed too", stream=True)
        assert "response.completed" not in [e.type async for e in stream]
    except openai.APIStatusError as exc:
        assert exc.status_code >= 500
    conv.failing[0] = False
    assert len(await listed(conv, made.id)) == 1
    ok = await conv.sdk.responses.create(model=MODEL, conversation=made.id, input="Fine")
    assert ok.output_text == "Hello there." and len(await listed(conv, made.id)) == 3


async def test_a_failed_commit_keeps_neither_the_items_nor_the_response(conv: Conv, tmp_path: Path) -> None:
    made = await conv.sdk.conversations.create(items=[{"role": "user", "content": "Hi"}])
    db = tmp_path / "c.db"
    with sqlite3.connect(db) as conn:  # the items' insert fails inside the transaction that also keeps the response
        conn.execute("CREATE TRIGGER no_items BEFORE INSERT ON conversation_items BEGIN SELECT RAISE(ABORT, 'no'); END")
    with pytest.raises(openai.InternalServerError) as info:
        await conv.sdk.responses.create(model=MODEL, conversation=made.id, input="Lost")
    assert info.value.status_code == 503 and body(info.value)["code"] == "store_unavailable"
    events = [e async for e in await conv.sdk.responses.create(model=MODEL, conversation=made.id, input="Lost too",
                                                                stream=True)]
    assert "response.completed" not in [e.type for e in events]  # never told it is complete
    assert events[-1].type == "error" and events[-1].code == "store_unavailable"  # type: ignore[union-attr]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM responses").fetchone()[0] == 0
        conn.execute("DROP TRIGGER no_items")
    assert len(await listed(conv, made.id)) == 1
    back = await conv.sdk.responses.create(model=MODEL, conversation=made.id, input="Back")
    assert (await conv.sdk.responses.retrieve(back.id)).conversation.id == made.id  # type: ignore[union-attr]
    assert len(await listed(conv, made.id)) == 3


async def test_concurrent_responses_on_one_conversation_each_append_whole(conv: Conv) -> None:
    made = await conv.sdk.conversations.create()
    done = await asyncio.gather(*(conv.sdk.responses.create(model=MODEL, conversation=made.id, input=f"turn {i}")
                                  for i in range(4)))
    items = await listed(conv, made.id)
    assert len(items) == 8
    for response in done:  # each response's input is followed by its own output
        at = [i.id for i in items].index(response.output[0].id)
        assert items[at - 1].role == "user" and items[at - 1].content[0].text.startswith("turn ")
    assert sorted(i.content[0].text for i in items if i.role == "user") == [f"turn {i}" for i in range(4)]


async def test_deleting_the_conversation_keeps_its_responses(conv: Conv) -> None:
    made = await conv.sdk.conversations.create()
    res = await conv.sdk.responses.create(model=MODEL, conversation=made.id, input="Keep me")
    await conv.sdk.conversations.delete(made.id)
    kept = await conv.sdk.responses.retrieve(res.id)
    assert kept.output_text == "Hello there." and kept.conversation is not None
    with pytest.raises(openai.NotFoundError) as info:
        await conv.sdk.responses.create(model=MODEL, conversation=made.id, input="More")
    assert body(info.value)["param"] == "conversation"


async def test_without_a_store_a_conversation_is_refused_by_name(storeless: Conv) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await storeless.sdk.responses.create(model=MODEL, input="Hi", conversation="conv_1")
    assert body(info.value)["param"] == "conversation"
    assert storeless.asked() == 0
