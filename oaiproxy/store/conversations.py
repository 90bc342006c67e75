"""OpenAI Conversations on the store: a ``threads`` row of kind ``conversation`` and its items, in order.

An item is the Responses API's JSON (as :mod:`oaiproxy.api.conversations` made it, with its ``id``); the store
keeps it whole and numbers it by ``position``. Items are appended in one transaction that locks the conversation's
row (PostgreSQL's ``FOR UPDATE``; SQLite's write transaction locks the database), reads the end and writes after
it, so appends from several proxies take turns. Should two still meet at one end, the unique ``(thread_id,
position)`` index refuses the second and the append runs again on the new end: unlike a PikoBrain thread's run, a
response's items do not depend on where they land, so nobody has to be told to retry. A
response appended with its items (:meth:`ConversationStore.append`'s ``response``) is committed in that same
transaction, so a conversation never holds the items of a response that was not kept, nor the other way round.

The store knows rows, not HTTP: "not found" is ``None``, and what an item means is decided in the API.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from oaiproxy.store.database import Database
from oaiproxy.store.responses import ResponseRecord
from oaiproxy.store.schema import ConversationItem, Thread, utcnow

#: how many times an append runs again after another writer took its positions (PostgreSQL only)
_APPEND_TRIES = 5
KIND = "conversation"


def new_conversation_id() -> str:
    return f"conv_{secrets.token_hex(24)}"


@dataclass
class ConversationRecord:
    id: str
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)

    @classmethod
    def of(cls, row: Thread) -> ConversationRecord:
        return cls(id=row.id, metadata=dict(row.meta or {}), created_at=row.created_at)


@dataclass
class StoredItem:
    item: dict[str, Any]
    position: int
    response_id: str | None = None
    created_at: datetime = field(default_factory=utcnow)

    @property
    def id(self) -> str:
        return str(self.item["id"])

    @classmethod
    def of(cls, row: ConversationItem) -> StoredItem:
        return cls(item=dict(row.item), position=row.position, response_id=row.response_id,
                   created_at=row.created_at)


@dataclass
class ItemPage:
    items: list[StoredItem]
    has_more: bool


class DuplicateItems(Exception):
    """Items whose ids the conversation already holds (or that repeat one another): ``ids`` in the given order."""

    def __init__(self, ids: list[str]):
        super().__init__(", ".join(ids))
        self.ids = ids


class UnknownItem(Exception):
    """A page's ``after`` names no item of the conversation."""


class _Conflict(Exception):
    """Another writer took the positions this append read as free."""


class ConversationStore:
    def __init__(self, db: Database):
        self.db = db

    async def _conversation(self, session: AsyncSession, conversation_id: str, lock: bool = False) -> Thread | None:
        """The conversation's row; ``lock``: held until the transaction ends (PostgreSQL's ``FOR UPDATE``; a
        SQLite write transaction holds the whole database already), so appends on it take turns."""
        query = select(Thread).where(Thread.id == conversation_id, Thread.kind == KIND)
        return (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()

    async def create(self, metadata: dict[str, str], items: Sequence[dict[str, Any]] = (),
                     user: str | None = None) -> tuple[ConversationRecord, list[StoredItem]]:
        """A new conversation holding ``items`` (each with its ``id``), committed together."""
        _check_unique(items, set())
        async with self.db.session(write=True) as session:
            row = Thread(id=new_conversation_id(), kind=KIND, name=None, user=user, meta=dict(metadata))
            session.add(row)
            await session.flush()  # the conversation before its items (no relationship() orders them)
            rows = _rows(row.id, 0, items, None)
            session.add_all(rows)
            await session.flush()
            return ConversationRecord.of(row), [StoredItem.of(r) for r in rows]

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        async with self.db.session() as session:
            row = await self._conversation(session, conversation_id)
            return ConversationRecord.of(row) if row is not None else None

    async def update(self, conversation_id: str, metadata: dict[str, str]) -> ConversationRecord | None:
        """Replace the conversation's metadata (as OpenAI's update does)."""
        async with self.db.session(write=True) as session:
            row = await self._conversation(session, conversation_id)
            if row is None:
                return None
            row.meta = dict(metadata)
            row.updated_at = utcnow()
            await session.flush()
            return ConversationRecord.of(row)

    async def delete(self, conversation_id: str) -> bool:
        """Forget the conversation and its items (responses that were part of it stay, as they were answered)."""
        async with self.db.session(write=True) as session:
            row = await self._conversation(session, conversation_id)
            if row is None:
                return False
            await session.execute(delete(ConversationItem).where(ConversationItem.thread_id == row.id))
            await session.delete(row)
            return True

    async def items(self, conversation_id: str) -> list[StoredItem] | None:
        """Every item, oldest first: the history a response on the conversation reads. None: no conversation."""
        async with self.db.session() as session:
            if await self._conversation(session, conversation_id) is None:
                return None
            rows = (await session.execute(select(ConversationItem)
                                          .where(ConversationItem.thread_id == conversation_id)
                                          .order_by(ConversationItem.position))).scalars().all()
            return [StoredItem.of(r) for r in rows]

    async def page(self, conversation_id: str, *, limit: int, after: str | None = None,
                   descending: bool = True) -> ItemPage | None:
        """Up to ``limit`` items after the item ``after`` in the page's order (:class:`UnknownItem` if it is none
        of this conversation's). None: no conversation."""
        async with self.db.session() as session:
            if await self._conversation(session, conversation_id) is None:
                return None
            query = select(ConversationItem).where(ConversationItem.thread_id == conversation_id)
            if after is not None:
                mark = (await session.execute(select(ConversationItem.position).where(
                    ConversationItem.thread_id == conversation_id, ConversationItem.item_id == after))).scalar()
                if mark is None:
                    raise UnknownItem(after)
                query = query.where(ConversationItem.position < mark if descending
                                    else ConversationItem.position > mark)
            order = ConversationItem.position.desc() if descending else ConversationItem.position.asc()
            rows = (await session.execute(query.order_by(order).limit(limit + 1))).scalars().all()
        return ItemPage([StoredItem.of(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def item(self, conversation_id: str, item_id: str) -> StoredItem | None:
        async with self.db.session() as session:
            row = (await session.execute(select(ConversationItem).where(
                ConversationItem.thread_id == conversation_id, ConversationItem.item_id == item_id))).scalar()
            return StoredItem.of(row) if row is not None else None

    async def delete_item(self, conversation_id: str, item_id: str) -> tuple[ConversationRecord, bool] | None:
        """Forget one item; the conversation and whether the item was there. None: no conversation."""
        async with self.db.session(write=True) as session:
            row = await self._conversation(session, conversation_id)
            if row is None:
                return None
            result = await session.execute(delete(ConversationItem).where(
                ConversationItem.thread_id == conversation_id, ConversationItem.item_id == item_id))
            return ConversationRecord.of(row), bool(getattr(result, "rowcount", 0))

    async def append(self, conversation_id: str, items: Sequence[dict[str, Any]],
                     response: ResponseRecord | None = None) -> list[StoredItem] | None:
        """Add ``items`` at the end (and keep ``response``, which added them, in the same transaction).

        None: the conversation is gone (nothing was written); :class:`DuplicateItems`: some ids are taken."""
        for _ in range(_APPEND_TRIES - 1):
            try:
                return await self._append(conversation_id, items, response)
            except _Conflict:
                continue
        return await self._append(conversation_id, items, response, last=True)

    async def _append(self, conversation_id: str, items: Sequence[dict[str, Any]], response: ResponseRecord | None,
                      last: bool = False) -> list[StoredItem] | None:
        async with self.db.session(write=True) as session:
            row = await self._conversation(session, conversation_id, lock=True)
            if row is None:
                return None
            ids = [str(item["id"]) for item in items]
            taken = set((await session.execute(select(ConversationItem.item_id).where(
                ConversationItem.thread_id == conversation_id, ConversationItem.item_id.in_(ids)))).scalars())
            _check_unique(items, taken)
            end = (await session.execute(select(func.max(ConversationItem.position))
                                         .where(ConversationItem.thread_id == conversation_id))).scalar()
            rows = _rows(conversation_id, end + 1 if end is not None else 0, items,
                         response.id if response is not None else None)
            session.add_all(rows)
            if response is not None:
                session.add(response.row())
            row.updated_at = utcnow()
            try:
                await session.flush()
            except IntegrityError:
                if last:
                    raise
                raise _Conflict() from None
            return [StoredItem.of(r) for r in rows]


def _check_unique(items: Sequence[dict[str, Any]], taken: set[str]) -> None:
    seen = set(taken)
    repeated = []
    for item in items:
        item_id = str(item["id"])
        if item_id in seen:
            repeated.append(item_id)
        seen.add(item_id)
    if repeated:
        raise DuplicateItems(repeated)


def _rows(conversation_id: str, start: int, items: Sequence[dict[str, Any]],
          response_id: str | None) -> list[ConversationItem]:
    now = utcnow()
    return [ConversationItem(thread_id=conversation_id, position=start + i, item_id=str(item["id"]),
                             type=str(item.get("type", "message")), item=dict(item), response_id=response_id,
                             created_at=now)
            for i, item in enumerate(items)]


__all__ = ["ConversationRecord", "ConversationStore", "DuplicateItems", "ItemPage", "StoredItem", "UnknownItem",
           "new_conversation_id"]
