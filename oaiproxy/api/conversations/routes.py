"""``/v1/conversations``: create, retrieve, update and delete a conversation; add, list, retrieve and delete its items.

The conversations live in ``ProxyState.store`` (:class:`oaiproxy.store.conversations.ConversationStore`); a proxy
without a store answers every route 400 ``store_disabled``. An item is kept as the Responses API lists it
(:func:`oaiproxy.api.responses.serving.stored_item`: an id, the client's or a new one, a status, a message's
content as parts), so ``GET .../items`` shows the same JSON as a response's ``input_items`` and ``output``.
A response that names the conversation (``POST /v1/responses`` with ``conversation``) appends to it in
:mod:`oaiproxy.api.responses.serving`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel

from oaiproxy.api.conversations.protocol import (
    Conversation,
    ConversationCreateRequest,
    ConversationDeleted,
    ConversationItemList,
    ConversationUpdateRequest,
    ItemsCreateRequest,
    check_items,
    check_metadata,
    duplicate,
    item_not_found,
    not_found,
)
from oaiproxy.api.paging import PAGE_DEFAULT, PAGE_MAX, query_limit, query_order
from oaiproxy.api.protocol import parse_request
from oaiproxy.api.responses.protocol import InputItem
from oaiproxy.api.responses.routes import model_json, state_of
from oaiproxy.api.responses.serving import stored_item
from oaiproxy.errors import BadRequest
from oaiproxy.store.conversations import ConversationRecord, ConversationStore, DuplicateItems, StoredItem, UnknownItem

if TYPE_CHECKING:
    from oaiproxy.api.app import ProxyState, Reply

#: the types an item may have (anything else is a 400 naming ``items[i].type``)
_ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning", "item_reference")
_ITEM_PARAM = re.compile(r"^(\w+)\[(\d+)\]$")


def conversations_of(state: ProxyState) -> ConversationStore:
    if state.store is None:
        raise BadRequest("conversations need the store, and this server runs without one", code="store_disabled")
    return state.store.conversations


def parse_items_body(model: type[BaseModel], body: Any) -> Any:
    """``parse_request``, with an item of an unknown type named by its ``type`` (``items[2].type``)."""
    try:
        return parse_request(model, body)
    except BadRequest as bad:
        found = _ITEM_PARAM.match(bad.param or "")
        if found and isinstance(body, dict):
            listed = body.get(found.group(1))
            index = int(found.group(2))
            item = listed[index] if isinstance(listed, list) and index < len(listed) else None
            if isinstance(item, dict) and item.get("type", "message") not in _ITEM_TYPES:
                param = f"{bad.param}.type"
                bad.message = bad.message.replace(f"'{bad.param}'", f"'{param}'", 1)
                bad.param = param
        raise


def as_conversation(record: ConversationRecord) -> Conversation:
    return Conversation(id=record.id, created_at=int(record.created_at.timestamp()), metadata=record.metadata)


def as_list(items: Sequence[StoredItem], has_more: bool = False) -> ConversationItemList:
    return ConversationItemList(data=[i.item for i in items], first_id=items[0].id if items else None,
                                last_id=items[-1].id if items else None, has_more=has_more)


def new_items(items: Sequence[InputItem], field: str = "items") -> list[dict[str, Any]]:
    """The items to keep: checked (:func:`check_items`), each as the API lists it, ids unique among them."""
    check_items(items, field)
    return [stored_item(item) for item in items]


# ---------------------------------------------------------------- conversations


async def create_conversation(request: web.Request, state: ProxyState, body: Any) -> Reply:
    store = conversations_of(state)
    req: ConversationCreateRequest = parse_items_body(ConversationCreateRequest, body)
    metadata = check_metadata(req.metadata)
    items = new_items(req.items or [])

    async def create() -> Conversation:
        try:
            record, _ = await store.create(metadata, items)
        except DuplicateItems as exc:
            raise duplicate(exc, items) from None
        return as_conversation(record)

    return create()


async def _conversation(request: web.Request) -> tuple[ConversationStore, ConversationRecord]:
    store = conversations_of(state_of(request))
    cid = request.match_info["conversation_id"]
    record = await store.get(cid)
    if record is None:
        raise not_found(cid)
    return store, record


async def get_conversation(request: web.Request) -> web.Response:
    _, record = await _conversation(request)
    return model_json(as_conversation(record))


async def update_conversation(request: web.Request, state: ProxyState, body: Any) -> Reply:
    store = conversations_of(state)
    req: ConversationUpdateRequest = parse_request(ConversationUpdateRequest, body)
    metadata = check_metadata(req.metadata)
    cid = request.match_info["conversation_id"]

    async def update() -> Conversation:
        record = await store.update(cid, metadata)
        if record is None:
            raise not_found(cid)
        return as_conversation(record)

    return update()


async def delete_conversation(request: web.Request) -> web.Response:
    store = conversations_of(state_of(request))
    cid = request.match_info["conversation_id"]
    if not await store.delete(cid):
        raise not_found(cid)
    return model_json(ConversationDeleted(id=cid))


# ---------------------------------------------------------------- items


async def create_items(request: web.Request, state: ProxyState, body: Any) -> Reply:
    store = conversations_of(state)
    req: ItemsCreateRequest = parse_items_body(ItemsCreateRequest, body)
    items = new_items(req.items)
    cid = request.match_info["conversation_id"]

    async def create() -> ConversationItemList:
        try:
            added = await store.append(cid, items)
        except DuplicateItems as exc:
            raise duplicate(exc, items) from None
        if added is None:
            raise not_found(cid)
        return as_list(added)

    return create()


async def list_items(request: web.Request) -> web.Response:
    """One page of the conversation's items, newest first by default (as OpenAI's)."""
    limit = query_limit(request, PAGE_DEFAULT, PAGE_MAX)
    order = query_order(request, "desc")
    after = request.query.get("after")
    store = conversations_of(state_of(request))
    cid = request.match_info["conversation_id"]
    try:
        page = await store.page(cid, limit=limit, after=after, descending=order == "desc")
    except UnknownItem:
        raise BadRequest(f"'after' names no item of conversation '{cid}': {after!r}", param="after",
                         code="invalid_value") from None
    if page is None:
        raise not_found(cid)
    return model_json(as_list(page.items, page.has_more))


async def get_item(request: web.Request) -> web.Response:
    store, record = await _conversation(request)
    item_id = request.match_info["item_id"]
    item = await store.item(record.id, item_id)
    if item is None:
        raise item_not_found(record.id, item_id)
    return web.json_response(item.item)


async def delete_item(request: web.Request) -> web.Response:
    """Forget one item; the answer is the conversation, as OpenAI's."""
    store = conversations_of(state_of(request))
    cid, item_id = request.match_info["conversation_id"], request.match_info["item_id"]
    result = await store.delete_item(cid, item_id)
    if result is None:
        raise not_found(cid)
    record, deleted = result
    if not deleted:
        raise item_not_found(cid, item_id)
    return model_json(as_conversation(record))


__all__ = ["conversations_of", "create_conversation", "create_items",
           "delete_conversation", "delete_item", "get_conversation", "get_item", "list_items", "new_items",
           "parse_items_body", "update_conversation"]
