"""The Conversations routes through the official openai SDK on a real SQLite store: create (with initial items and
metadata), retrieve, update, delete; items added, listed in pages both ways, retrieved and deleted; every bad
input a 400 naming the field, unknown ids 404s naming the path's, ``--api-key`` guarding them, a proxy without a
store answering 400 ``store_disabled``, and the routes in ``/openapi.json``."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.api.conversations.conftest import KEY, Conv

USER = {"type": "message", "role": "user", "content": "My name is Zed."}
ASSISTANT = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi Zed."}]}
CALL = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}


def body(exc: openai.APIStatusError) -> dict[str, Any]:
    assert isinstance(exc.body, dict)
    return exc.body


async def test_a_conversation_is_created_read_updated_and_deleted(conv: Conv) -> None:
    made = await conv.sdk.conversations.create(metadata={"topic": "weather", "user": "ana"},
                                               items=[USER, ASSISTANT])  # type: ignore[list-item]
    assert made.id.startswith("conv_") and made.object == "conversation" and made.created_at > 0
    assert made.metadata == {"topic": "weather", "user": "ana"}

    got = await conv.sdk.conversations.retrieve(made.id)
    assert (got.id, got.created_at, got.metadata) == (made.id, made.created_at, made.metadata)

    updated = await conv.sdk.conversations.update(made.id, metadata={"topic": "travel"})
    assert updated.metadata == {"topic": "travel"}  # replaced, not merged
    assert (await conv.sdk.conversations.retrieve(made.id)).metadata == {"topic": "travel"}

    # the raw wire shape, as OpenAI's reference gives it
    raw = await conv.http.get(f"/v1/conversations/{made.id}")
    assert await raw.json() == {"id": made.id, "object": "conversation", "created_at": made.created_at,
                                "metadata": {"topic": "travel"}}

    deleted = await conv.sdk.conversations.delete(made.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (made.id, "conversation.deleted", True)
    for call in (conv.sdk.conversations.retrieve(made.id), conv.sdk.conversations.delete(made.id),
                 conv.sdk.conversations.update(made.id, metadata={}), conv.sdk.conversations.items.list(made.id),
                 conv.sdk.conversations.items.create(made.id, items=[USER])):  # type: ignore[list-item]
        with pytest.raises(openai.NotFoundError) as info:
            await call
        assert body(info.value)["param"] == "conversation_id"
        assert body(info.value)["code"] == "conversation_not_found"


async def test_a_conversation_without_anything_is_empty(conv: Conv) -> None:
    made = await conv.sdk.conversations.create()
    assert made.metadata == {}
    page = await conv.http.get(f"/v1/conversations/{made.id}/items")
    assert await page.json() == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


async def test_items_are_kept_as_the_responses_api_lists_them_and_listed_in_pages(conv: Conv) -> None:
    made = await conv.sdk.conversations.create(items=[USER, ASSISTANT, CALL])  # type: ignore[list-item]
    added = await conv.sdk.conversations.items.create(
        made.id, items=[OUTPUT, {"role": "user", "content": "And tomorrow?", "id": "msg_mine"}])  # type: ignore[list-item]
    assert added.object == "list" and not added.has_more
    assert [i.type for i in added.data] == ["function_call_output", "message"]
    assert added.last_id == "msg_mine" and added.first_id == added.data[0].id

    everything = [i async for i in conv.sdk.conversations.items.list(made.id, order="asc")]
    assert [i.type for i in everything] == ["message", "message", "function_call", "function_call_output", "message"]
    ids = [i.id for i in everything]
    assert len(set(ids)) == 5 and ids[-1] == "msg_mine"
    assert ids[0].startswith("msg_") and ids[2].startswith("fc_") and ids[3].startswith("fco_")
    first = everything[0]
    assert first.type == "message" and first.role == "user" and first.status == "completed"
    assert first.content[0].type == "input_text" and first.content[0].text == "My name is Zed."  # type: ignore[union-attr]
    assert everything[2].name == "get_weather" and everything[2].call_id == "call_1"  # type: ignore[union-attr]

    # default order: newest first, 20 a page; pages by `after`, each way
    newest = await conv.sdk.conversations.items.list(made.id)
    assert [i.id for i in newest.data] == ids[::-1]
    page = await conv.http.get(f"/v1/conversations/{made.id}/items", params={"limit": "2"})
    data = await page.json()
    assert [i["id"] for i in data["data"]] == ids[:2:-1] and data["has_more"] is True
    assert (data["first_id"], data["last_id"]) == (ids[4], ids[3])
    page = await conv.http.get(f"/v1/conversations/{made.id}/items", params={"limit": "2", "after": ids[3]})
    data = await page.json()
    assert [i["id"] for i in data["data"]] == [ids[2], ids[1]] and data["has_more"] is True
    page = await conv.http.get(f"/v1/conversations/{made.id}/items",
                               params={"limit": "2", "after": ids[1], "order": "desc"})
    data = await page.json()
    assert [i["id"] for i in data["data"]] == [ids[0]] and data["has_more"] is False
    page = await conv.http.get(f"/v1/conversations/{made.id}/items",
                               params={"limit": "3", "after": ids[1], "order": "asc"})
    data = await page.json()
    assert [i["id"] for i in data["data"]] == ids[2:5] and data["has_more"] is False
    # the SDK's auto-paging walks the pages with `after`
    assert [i.id async for i in conv.sdk.conversations.items.list(made.id, limit=2, order="asc")] == ids

    one = await conv.sdk.conversations.items.retrieve(ids[2], conversation_id=made.id)
    assert one.id == ids[2] and one.type == "function_call"
    raw = await conv.http.get(f"/v1/conversations/{made.id}/items/{ids[3]}")
    assert await raw.json() == {"id": ids[3], "type": "function_call_output", "call_id": "call_1",
                                "output": "sunny", "status": "completed"}

    after_delete = await conv.sdk.conversations.items.delete(ids[1], conversation_id=made.id)
    assert after_delete.id == made.id and after_delete.object == "conversation"  # the conversation, as OpenAI's
    assert [i.id async for i in conv.sdk.conversations.items.list(made.id, order="asc")] == [ids[0], *ids[2:]]
    for call in (conv.sdk.conversations.items.retrieve(ids[1], conversation_id=made.id),
                 conv.sdk.conversations.items.delete(ids[1], conversation_id=made.id)):
        with pytest.raises(openai.NotFoundError) as info:
            await call
        assert body(info.value)["param"] == "item_id" and body(info.value)["code"] == "item_not_found"
    # an item of another conversation is not this one's
    other = await conv.sdk.conversations.create(items=[USER])  # type: ignore[list-item]
    with pytest.raises(openai.NotFoundError):
        await conv.sdk.conversations.items.retrieve(ids[0], conversation_id=other.id)
    with pytest.raises(openai.NotFoundError) as info:
        await conv.sdk.conversations.items.retrieve(ids[0], conversation_id="conv_nope")
    assert body(info.value)["param"] == "conversation_id"


@pytest.mark.parametrize("query, param", [
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "many"}, "limit"),
    ({"order": "sideways"}, "order"), ({"after": "msg_unknown"}, "after"),
])
async def test_bad_list_queries_are_400s_naming_the_parameter(conv: Conv, query: dict[str, str], param: str) -> None:
    made = await conv.sdk.conversations.create(items=[USER])  # type: ignore[list-item]
    got = await conv.http.get(f"/v1/conversations/{made.id}/items", params=query)
    assert got.status == 400
    error = (await got.json())["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("sent, param, words", [
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "at most 16 pairs"),
    ({"metadata": {"k" * 65: "v"}}, "metadata", "at most 64 characters"),
    ({"metadata": {"k": "v" * 513}}, "metadata.k", "at most 512 characters"),
    ({"metadata": {"k": 1}}, "metadata.k", "valid string"),
    ({"metadata": "tags"}, "metadata", "valid dictionary"),
    ({"items": [USER] * 21}, "items", "at most 20"),
    ({"items": "hello"}, "items", "valid list"),
    ({"items": [USER, ASSISTANT, {"type": "web_search_call", "id": "ws_1"}]}, "items[2].type", "type must be"),
    ({"items": [USER, {"type": "function_call", "name": "f", "arguments": "{}"}]}, "items[1].call_id", "required"),
    ({"items": [{"role": "robot", "content": "beep"}]}, "items[0].role", "'user'"),
    ({"items": [{"type": "item_reference", "id": "msg_1"}]}, "items[0]", "item references"),
    ({"items": [USER, {"role": "user", "content": [{"type": "input_image", "image_url": "data:"}]}]},
     "items[1].content", "input_image"),
    ({"items": [{**USER, "id": "msg_a"}, {**ASSISTANT, "id": "msg_a"}]}, "items[1].id", "Duplicate item"),
])
async def test_bad_conversations_are_400s_naming_the_field(conv: Conv, sent: dict[str, Any], param: str,
                                                           words: str) -> None:
    got = await conv.http.post("/v1/conversations", json=sent)
    assert got.status == 400
    error = (await got.json())["error"]
    assert error["param"] == param and words in error["message"], error
    assert error["type"] == "invalid_request_error"


async def test_bad_items_and_updates_are_400s_naming_the_field(conv: Conv) -> None:
    made = await conv.sdk.conversations.create(items=[{**USER, "id": "msg_zed"}])  # type: ignore[list-item]
    for sent, param in (({"items": []}, "items"), ({}, "items"), ({"items": [USER] * 21}, "items"),
                        ({"items": [USER, {"type": "bogus"}]}, "items[1].type"),
                        ({"items": [ASSISTANT, {**USER, "id": "msg_zed"}]}, "items[1].id")):
        got = await conv.http.post(f"/v1/conversations/{made.id}/items", json=sent)
        assert got.status == 400 and (await got.json())["error"]["param"] == param, sent
    for sent, param in (({}, "metadata"), ({"metadata": {"k": "v" * 600}}, "metadata.k")):
        got = await conv.http.post(f"/v1/conversations/{made.id}", json=sent)
        assert got.status == 400 and (await got.json())["error"]["param"] == param, sent
    got = await conv.http.post(f"/v1/conversations/{made.id}", data=b"{not json")
    assert got.status == 400 and (await got.json())["error"]["param"] == "body"
    # nothing of the refused requests was kept
    assert [i.id async for i in conv.sdk.conversations.items.list(made.id)] == ["msg_zed"]
    assert (await conv.sdk.conversations.retrieve(made.id)).metadata == {}
    # null metadata clears it
    await conv.sdk.conversations.update(made.id, metadata={"a": "b"})
    assert (await conv.sdk.conversations.update(made.id, metadata=None)).metadata == {}


async def test_the_api_key_guards_the_conversation_routes(keyed: Conv) -> None:
    made = await keyed.sdk.conversations.create(items=[USER])  # type: ignore[list-item]
    for method, path in (("POST", "/v1/conversations"), ("GET", f"/v1/conversations/{made.id}"),
                         ("GET", f"/v1/conversations/{made.id}/items"),
                         ("DELETE", f"/v1/conversations/{made.id}")):
        got = await keyed.http.request(method, path, json={})
        assert got.status == 401 and (await got.json())["error"]["code"] == "invalid_api_key"
        got = await keyed.http.request(method, path, json={}, headers={"Authorization": "Bearer wrong"})
        assert got.status == 401
    assert (await keyed.sdk.conversations.retrieve(made.id)).id == made.id  # still there: nothing got through
    got = await keyed.http.get(f"/v1/conversations/{made.id}", headers={"Authorization": f"Bearer {KEY}"})
    assert got.status == 200


async def test_without_a_store_the_routes_are_400_store_disabled(storeless: Conv) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await storeless.sdk.conversations.create()
    assert body(info.value)["code"] == "store_disabled"
    for method, path in (("GET", "/v1/conversations/conv_1"), ("POST", "/v1/conversations/conv_1"),
                         ("DELETE", "/v1/conversations/conv_1"), ("GET", "/v1/conversations/conv_1/items"),
                         ("POST", "/v1/conversations/conv_1/items"), ("GET", "/v1/conversations/conv_1/items/i"),
                         ("DELETE", "/v1/conversations/conv_1/items/i")):
        got = await storeless.http.request(method, path, json={"items": [USER], "metadata": {}})
        assert got.status == 400 and (await got.json())["error"]["code"] == "store_disabled", (method, path)


async def test_the_routes_are_in_the_openapi_document(conv: Conv) -> None:
    doc = await (await conv.http.get("/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths["/v1/conversations"]) == {"post"}
    assert {"get", "post", "delete"} <= set(paths["/v1/conversations/{conversation_id}"])
    assert {"get", "post"} <= set(paths["/v1/conversations/{conversation_id}/items"])
    assert {"get", "delete"} <= set(paths["/v1/conversations/{conversation_id}/items/{item_id}"])
    ops = {op["operationId"] for p in paths.values() for op in p.values() if isinstance(op, dict) and
           "operationId" in op}
    assert {"createConversation", "retrieveConversation", "updateConversation", "deleteConversation",
            "createConversationItems", "listConversationItems", "retrieveConversationItem",
            "deleteConversationItem"} <= ops
    schemas = doc["components"]["schemas"]
    assert {"Conversation", "ConversationDeleted", "ConversationItemList", "ConversationCreateRequest"} <= set(schemas)
