"""OpenAI Conversations request and response shapes (pydantic v2).

A conversation's items are the Responses API's input items (:data:`oaiproxy.api.responses.protocol.InputItem`:
``message``, ``function_call``, ``function_call_output``, ``reasoning``), parsed by the same models, so an item
the Responses API would refuse is refused here too, with the same field named (``items[2].type``). What the
model could not read (image parts, item references) is refused when it is added, not later when a response
reads the conversation. Errors are OpenAI's error JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from oaiproxy.api.protocol import LenientModel
from oaiproxy.api.responses.protocol import FunctionCallOutputItem, InputItem, ItemReference, MessageItem
from oaiproxy.errors import BadRequest, NotFound
from oaiproxy.store.conversations import DuplicateItems

#: OpenAI's bounds: items added at a time, metadata pairs, key and value lengths
MAX_ITEMS, MAX_PAIRS, MAX_KEY, MAX_VALUE = 20, 16, 64, 512
#: the longest item id kept (the store's column)
MAX_ID = 64

Metadata = dict[str, str]


def check_metadata(metadata: Metadata | None) -> Metadata:
    """OpenAI's bounds on ``metadata`` (16 pairs, keys up to 64 characters, values up to 512), the key named."""
    metadata = metadata or {}
    if len(metadata) > MAX_PAIRS:
        raise BadRequest(f"'metadata' holds at most {MAX_PAIRS} pairs, not {len(metadata)}", param="metadata",
                         code="invalid_value")
    for key, value in metadata.items():
        if len(key) > MAX_KEY:
            raise BadRequest(f"'metadata' keys are at most {MAX_KEY} characters; {key[:20]!r}... has {len(key)}",
                             param="metadata", code="invalid_value")
        if len(value) > MAX_VALUE:
            raise BadRequest(f"'metadata.{key}' is at most {MAX_VALUE} characters, not {len(value)}",
                             param=f"metadata.{key}", code="invalid_value")
    return metadata


def check_items(items: Sequence[InputItem], field: str = "items") -> None:
    """Refuse, naming the item, what no response could read: item references and non-text content."""
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if item.id is not None and not 1 <= len(item.id) <= MAX_ID:
            raise BadRequest(f"an item's id is 1 to {MAX_ID} characters, not {len(item.id)}", param=f"{where}.id",
                             code="invalid_value")
        if isinstance(item, ItemReference):
            raise BadRequest("item references are not resolved; send the item itself", param=where,
                             code="unsupported_parameter")
        try:
            if isinstance(item, MessageItem | FunctionCallOutputItem):
                item.text()
        except BadRequest as exc:
            exc.param = f"{where}.{'content' if isinstance(item, MessageItem) else 'output'}"
            raise


def not_found(conversation_id: str, param: str = "conversation_id") -> NotFound:
    return NotFound(f"conversation '{conversation_id}' not found: it was never created, or was deleted",
                    param=param, code="conversation_not_found")


def item_not_found(conversation_id: str, item_id: str) -> NotFound:
    return NotFound(f"item '{item_id}' not found in conversation '{conversation_id}'", param="item_id",
                    code="item_not_found")


def duplicate(exc: DuplicateItems, items: Sequence[dict[str, Any]], field: str = "items") -> BadRequest:
    """OpenAI's answer to an item whose id the conversation holds already: a 400 naming the item."""
    ids = [str(item["id"]) for item in items]
    first = exc.ids[0]
    index = ids.index(first) if ids.count(first) == 1 else len(ids) - 1 - ids[::-1].index(first)
    return BadRequest(f"Duplicate item found with id {first}: the conversation holds it already (or the request "
                      "repeats it); remove duplicate items and try again", param=f"{field}[{index}].id",
                      code="duplicate_item")


class ConversationCreateRequest(LenientModel):
    items: list[InputItem] | None = Field(default=None, max_length=MAX_ITEMS, description=(
        f"Initial items (at most {MAX_ITEMS}), as the Responses API's input items."))
    metadata: Metadata | None = Field(default=None, description=(
        f"At most {MAX_PAIRS} string pairs (keys up to {MAX_KEY} characters, values up to {MAX_VALUE})."))


class ConversationUpdateRequest(LenientModel):
    metadata: Metadata | None = Field(description="Replaces the conversation's metadata (null: none).")


class ItemsCreateRequest(LenientModel):
    items: list[InputItem] = Field(min_length=1, max_length=MAX_ITEMS, description=(
        f"The items to add at the end (1 to {MAX_ITEMS})."))
    include: list[str] | None = None


class Conversation(BaseModel):
    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: Metadata = Field(default_factory=dict)


class ConversationDeleted(BaseModel):
    """What ``DELETE /v1/conversations/{id}`` answers."""

    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool = True


class ConversationItemList(BaseModel):
    """One page of a conversation's items (the Responses API's JSON items, each with its ``id``)."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


__all__ = ["Conversation", "ConversationCreateRequest", "ConversationDeleted", "ConversationItemList",
           "ConversationUpdateRequest", "ItemsCreateRequest", "MAX_ITEMS", "Metadata", "check_items",
           "check_metadata", "duplicate", "item_not_found", "not_found"]
