"""State kept server-side, in one database: stored Responses, PikoBrain's threads, OpenAI Conversations.

:class:`Store` is what the proxy opens at start-up (``--db-url``, else a SQLite file in ``--data-dir``)
and hands to the routes through ``ProxyState.store``; docs/store.md describes the schema and guarantees.
"""

from __future__ import annotations

from oaiproxy.settings import Settings
from oaiproxy.store.conversations import ConversationStore
from oaiproxy.store.database import Database, StoreUnavailable, database_url
from oaiproxy.store.responses import Chain, ResponseRecord, ResponseStore
from oaiproxy.store.threads import ThreadBusy, ThreadStore


class Store:
    """The open database and the stores on it."""

    def __init__(self, db: Database):
        self.db = db
        self.responses = ResponseStore(db)
        self.threads = ThreadStore(db)
        self.conversations = ConversationStore(db)

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect and migrate; a :class:`oaiproxy.settings.ConfigError` naming ``--db-url`` if it cannot."""
        return cls(await Database.open(url))

    @classmethod
    async def from_settings(cls, settings: Settings) -> Store:
        return await cls.open(database_url(settings))

    async def close(self) -> None:
        await self.db.close()


__all__ = ["Chain", "ConversationStore", "Database", "ResponseRecord", "ResponseStore", "Store", "StoreUnavailable",
           "ThreadBusy", "ThreadStore", "database_url"]
