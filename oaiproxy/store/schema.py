"""The one schema every stateful surface shares (SQLAlchemy 2 declarative, portable to SQLite and PostgreSQL).

* ``threads``: a conversation kept server-side. PikoBrain's ``POST /<thread>`` names one (``name``), OpenAI's
  Conversations give it an id (``conv_...``); ``kind`` tells them apart, so both live in one table.
* ``messages``: a thread's turns, numbered by ``position`` (unique per thread: two runs that append at the
  same position cannot both commit, which is how a concurrent run is detected rather than interleaved).
  Tool calls are JSON as Chat Completions spells them; a ``tool`` message carries the ``tool_call_id`` it
  answers; ``tool_results`` keeps the server-side tool steps a run made before its answer.
* ``responses``: OpenAI Responses kept with ``store: true``: the request's own input items and the output
  items, each as the API's JSON, and ``previous_response_id``, the link a chain is walked by. The rest of
  the response object (instructions, tools, sampling, metadata) is ``response``, so a stored response is
  returned exactly as it was answered.
* ``conversation_items``: an OpenAI Conversation's items (a ``threads`` row of kind ``conversation``), each the
  API's JSON as the Responses API spells it (``message``, ``function_call``, ``function_call_output``,
  ``reasoning``), numbered by ``position`` (unique per conversation, as messages are) and unique by ``item_id``
  within it, so ``GET .../items/{item_id}`` names one.

This module is the model the code reads and writes; the tables on disk are made by the Alembic migrations
in ``alembic/versions`` (a test checks that they agree). JSON is ``JSONB`` on PostgreSQL, text on SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, MetaData, String, Text, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: constraint names fixed by convention, so a later migration can name what it alters on every backend
NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s", "fk": "fk_%(table_name)s_%(column_0_name)s",
          "pk": "pk_%(table_name)s"}

#: JSON documents: JSONB on PostgreSQL (indexable), JSON text elsewhere
Json = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone, so it is put back on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Thread(Base):
    __tablename__ = "threads"

    #: ``thr_...`` / ``conv_...``; a PikoBrain thread's name is ``name``, not the key, so it can be renamed
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: "thread" (PikoBrain, ``POST /<thread>``) or "conversation" (OpenAI Conversations)
    kind: Mapped[str] = mapped_column(String(16), default="thread")
    name: Mapped[str | None] = mapped_column(String(255), unique=True)
    #: who created it (``user`` / ``X-User``), for audit only
    user: Mapped[str | None] = mapped_column(String(255))
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("uq_messages_thread_position", "thread_id", "position", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    #: 0, 1, 2... within the thread: the order the model reads them in
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    user: Mapped[str | None] = mapped_column(String(255))
    #: the content's MIME type as it came in (text/plain, application/json...)
    content_type: Mapped[str] = mapped_column(String(255), default="text/plain")
    content: Mapped[str] = mapped_column(Text, default="")
    #: an assistant turn's calls, as Chat Completions spells ``tool_calls``
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(Json)
    #: a ``tool`` message: the call it answers (its result is ``content``)
    tool_call_id: Mapped[str | None] = mapped_column(String(255))
    #: the server-side tool steps (calls and results) a run made before this answer
    tool_results: Mapped[list[dict[str, Any]] | None] = mapped_column(Json)
    reasoning: Mapped[str | None] = mapped_column(Text)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StoredResponse(Base):
    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    model: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    #: no foreign key: a deleted response leaves its continuations in place (walking them then says so)
    previous_response_id: Mapped[str | None] = mapped_column(String(64), index=True)
    #: the Conversation (a ``threads`` row) it belongs to, when the request named one
    conversation_id: Mapped[str | None] = mapped_column(ForeignKey("threads.id", ondelete="SET NULL"), index=True)
    user: Mapped[str | None] = mapped_column(String(255))
    #: the request's own input items, each with its id, as the API's JSON (not the inherited history)
    input_items: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    output_items: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    usage: Mapped[dict[str, Any] | None] = mapped_column(Json)
    #: the rest of the response object: instructions, tools, tool_choice, text, sampling, metadata...
    response: Mapped[dict[str, Any]] = mapped_column(Json)


class ConversationItem(Base):
    __tablename__ = "conversation_items"
    __table_args__ = (Index("uq_conversation_items_thread_position", "thread_id", "position", unique=True),
                      Index("uq_conversation_items_thread_item", "thread_id", "item_id", unique=True))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    #: 0, 1, 2... within the conversation: the order the model reads them in (a deleted item leaves a gap)
    position: Mapped[int] = mapped_column(Integer)
    #: the item's own ``id`` (``msg_...``, ``fc_...``), as the API shows it
    item_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    #: the whole item, as the API's JSON
    item: Mapped[dict[str, Any]] = mapped_column(Json)
    #: the response that added it (None: added through the Conversations API itself)
    response_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


__all__ = ["Base", "ConversationItem", "Json", "Message", "NAMING", "StoredResponse", "Thread", "UTCDateTime", "utcnow"]
