"""PikoBrain's threads on the store: a named thread's messages, read in order, appended at a known position.

A run reads the thread (:meth:`ThreadStore.history`, which says where the next message goes), generates,
then appends the user's messages and the answer in one transaction (:meth:`ThreadStore.append`) that
names the position it read. If the thread moved meanwhile (another proxy on the same database appended,
or deleted it), the append is refused with :class:`ThreadBusy`, a 409, and nothing of it is kept: the
unique ``(thread_id, position)`` index is the last word on PostgreSQL, where two such transactions can
both read the old end. Within one process, :meth:`ThreadStore.lock` serialises the runs on a thread, so
they wait for each other instead of failing.

The store knows rows, not HTTP: what a message means to the model is decided in :mod:`oaiproxy.api.plain`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from oaiproxy.errors import APIError
from oaiproxy.store.database import Database
from oaiproxy.store.schema import Message, Thread, utcnow


class ThreadBusy(APIError):
    """Another run changed the thread between this run's read and its commit; the client may retry."""

    status = 409
    type = "invalid_request_error"


@dataclass
class NewMessage:
    """A message to append (its position is given by the append)."""

    role: str
    content: str = ""
    user: str | None = None
    content_type: str = "text/plain"
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    reasoning: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass
class StoredMessage(NewMessage):
    position: int = 0
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)

    @classmethod
    def of(cls, row: Message) -> StoredMessage:
        return cls(role=row.role, content=row.content, user=row.user, content_type=row.content_type,
                   tool_calls=row.tool_calls, tool_call_id=row.tool_call_id, reasoning=row.reasoning,
                   input_tokens=row.input_tokens, output_tokens=row.output_tokens, position=row.position,
                   id=row.id, created_at=row.created_at)


@dataclass
class History:
    """A thread's latest messages, oldest first, and where the next one goes (``thread_id`` None: no thread yet)."""

    messages: list[StoredMessage]
    next_position: int = 0
    thread_id: str | None = None


@dataclass
class Page:
    messages: list[StoredMessage]
    has_more: bool


def _busy(name: str, why: str) -> ThreadBusy:
    return ThreadBusy(f"thread {name!r} {why}; nothing of this request was kept: send it again",
                      param="thread", code="thread_busy")


class ThreadStore:
    def __init__(self, db: Database):
        self.db = db
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}

    @asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        """Hold thread ``name`` for one run or append in this process (other processes: see :class:`ThreadBusy`)."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        self._waiting[name] = self._waiting.get(name, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._waiting[name] -= 1
            if not self._waiting[name]:  # nobody holds or waits for it: forget it
                del self._waiting[name], self._locks[name]

    async def history(self, name: str, limit: int | None = None) -> History:
        """The last ``limit`` messages (None: all) of thread ``name``, oldest first."""
        async with self.db.session() as session:
            thread = (await session.execute(select(Thread).where(Thread.name == name))).scalar_one_or_none()
            if thread is None:
                return History([])
            last = (await session.execute(select(func.max(Message.position))
                                          .where(Message.thread_id == thread.id))).scalar()
            query = select(Message).where(Message.thread_id == thread.id).order_by(Message.position.desc())
            if limit is not None:
                query = query.limit(limit)
            rows = (await session.execute(query)).scalars().all()
        return History([StoredMessage.of(r) for r in reversed(rows)],
                       next_position=(last + 1) if last is not None else 0, thread_id=thread.id)

    async def append(self, name: str, read: History, messages: list[NewMessage], *,
                     user: str | None = None) -> list[StoredMessage]:
        """Append ``messages`` after what ``read`` saw, creating the thread if ``read`` found none; all or nothing.

        A :class:`ThreadBusy` if the thread is no longer as ``read`` saw it (a message was appended, or
        the thread deleted or made anew, by someone else)."""
        async with self.db.session(write=True) as session:
            thread = (await session.execute(select(Thread).where(Thread.name == name))).scalar_one_or_none()
            if thread is None:
                if read.thread_id is not None:
                    raise _busy(name, "was deleted while this request ran")
                thread = Thread(id=f"thr_{secrets.token_hex(12)}", kind="thread", name=name, user=user)
                session.add(thread)
                try:  # first: no relationship() tells the flush that the thread goes before its messages
                    await session.flush()
                except IntegrityError:  # PostgreSQL: another proxy created it meanwhile
                    raise _busy(name, "was created by another request meanwhile") from None
            elif thread.id != read.thread_id:
                raise _busy(name, "was created by another request meanwhile" if read.thread_id is None
                            else "was deleted and made anew while this request ran")
            else:
                last = (await session.execute(select(func.max(Message.position))
                                              .where(Message.thread_id == thread.id))).scalar()
                if (last + 1 if last is not None else 0) != read.next_position:
                    raise _busy(name, "got other messages while this request ran")
                thread.updated_at = utcnow()
            rows = [Message(thread_id=thread.id, position=read.next_position + i, role=m.role, user=m.user,
                            content_type=m.content_type, content=m.content, tool_calls=m.tool_calls,
                            tool_call_id=m.tool_call_id, reasoning=m.reasoning, input_tokens=m.input_tokens,
                            output_tokens=m.output_tokens)
                    for i, m in enumerate(messages)]
            session.add_all(rows)
            try:
                await session.flush()
            except IntegrityError:  # PostgreSQL: a concurrent transaction took these positions, or this name
                raise _busy(name, "got other messages while this request ran") from None
            return [StoredMessage.of(r) for r in rows]

    async def page(self, name: str, *, limit: int, after: int | None = None, before: int | None = None,
                   descending: bool = False) -> Page | None:
        """Up to ``limit`` messages with ``after < position < before``, oldest (or newest) first; None: no thread."""
        async with self.db.session() as session:
            thread = (await session.execute(select(Thread).where(Thread.name == name))).scalar_one_or_none()
            if thread is None:
                return None
            query = select(Message).where(Message.thread_id == thread.id)
            if after is not None:
                query = query.where(Message.position > after)
            if before is not None:
                query = query.where(Message.position < before)
            order = Message.position.desc() if descending else Message.position.asc()
            rows = (await session.execute(query.order_by(order).limit(limit + 1))).scalars().all()
        return Page([StoredMessage.of(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def delete(self, name: str) -> bool:
        """Forget thread ``name`` and its messages; False: there was none."""
        async with self.db.session(write=True) as session:
            thread = (await session.execute(select(Thread).where(Thread.name == name))).scalar_one_or_none()
            if thread is None:
                return False
            await session.execute(delete(Message).where(Message.thread_id == thread.id))
            await session.delete(thread)
            return True


__all__ = ["History", "NewMessage", "Page", "StoredMessage", "ThreadBusy", "ThreadStore"]
