"""Stored OpenAI Responses: save one when it is complete, read it back, walk a ``previous_response_id`` chain.

The store knows rows, not the API: items are the API's JSON as :mod:`oaiproxy.api.responses` made them,
and what a chain *means* (its items become the next request's history) is decided there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, literal, select

from oaiproxy.store.database import Database
from oaiproxy.store.schema import StoredResponse, utcnow

#: the longest chain walked for one request; beyond it the history is cut (oldest responses dropped)
MAX_CHAIN = 1000


@dataclass
class ResponseRecord:
    id: str
    model: str
    status: str
    input_items: list[dict[str, Any]]
    output_items: list[dict[str, Any]]
    #: the rest of the response object (instructions, tools, sampling...)
    response: dict[str, Any]
    previous_response_id: str | None = None
    usage: dict[str, Any] | None = None
    user: str | None = None
    conversation_id: str | None = None
    created_at: datetime = field(default_factory=utcnow)

    @classmethod
    def of(cls, row: StoredResponse) -> ResponseRecord:
        return cls(id=row.id, model=row.model, status=row.status, input_items=list(row.input_items),
                   output_items=list(row.output_items), response=dict(row.response),
                   previous_response_id=row.previous_response_id, usage=row.usage, user=row.user,
                   conversation_id=row.conversation_id, created_at=row.created_at)

    def row(self) -> StoredResponse:
        """The row that keeps it (a Conversation's append adds it in its own transaction)."""
        return StoredResponse(
            id=self.id, created_at=self.created_at, model=self.model, status=self.status,
            previous_response_id=self.previous_response_id, conversation_id=self.conversation_id,
            user=self.user, input_items=self.input_items, output_items=self.output_items,
            usage=self.usage, response=self.response)


@dataclass
class Chain:
    """A response and its ancestors, oldest first; ``missing``: the id the walk stopped at, deleted or never
    stored (None: the chain is whole, or cut at :data:`MAX_CHAIN`)."""

    records: list[ResponseRecord]
    missing: str | None = None


class ResponseStore:
    def __init__(self, db: Database):
        self.db = db

    async def save(self, record: ResponseRecord) -> None:
        """Keep ``record``; returns once it is committed."""
        async with self.db.session(write=True) as session:
            session.add(record.row())

    async def get(self, response_id: str) -> ResponseRecord | None:
        async with self.db.session() as session:
            row = await session.get(StoredResponse, response_id)
            return ResponseRecord.of(row) if row is not None else None

    async def delete(self, response_id: str) -> bool:
        """Forget a response (its continuations stay; continuing them then names it as missing)."""
        async with self.db.session(write=True) as session:
            result = await session.execute(delete(StoredResponse).where(StoredResponse.id == response_id))
            return bool(getattr(result, "rowcount", 0))

    async def chain(self, response_id: str, limit: int = MAX_CHAIN) -> Chain:
        """``response_id`` and the responses it continues, oldest first, in one recursive query."""
        r = StoredResponse.__table__
        walk = (select(r.c.id, r.c.previous_response_id, literal(0).label("depth"))
                .where(r.c.id == response_id).cte("walk", recursive=True))
        walk = walk.union_all(select(r.c.id, r.c.previous_response_id, (walk.c.depth + 1).label("depth"))
                              .join(walk, r.c.id == walk.c.previous_response_id).where(walk.c.depth < limit - 1))
        async with self.db.session() as session:
            rows = (await session.execute(select(StoredResponse, walk.c.depth)
                                          .join(walk, StoredResponse.id == walk.c.id)
                                          .order_by(walk.c.depth.desc()))).all()
            records = [ResponseRecord.of(row) for row, _ in rows]
        if not records:
            return Chain([], missing=response_id)
        oldest = records[0].previous_response_id
        return Chain(records, missing=oldest if oldest is not None and len(records) < limit else None)


__all__ = ["Chain", "MAX_CHAIN", "ResponseRecord", "ResponseStore"]
