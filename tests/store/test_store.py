"""The store on real SQLite files: migrations at open (WAL, the schema the models describe, data kept across a
schema change, proxies opening one fresh file at once), stored responses and chains, threads and their
messages, and the start-up errors that name --db-url."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from oaiproxy.settings import ConfigError, Settings
from oaiproxy.store import Database, ResponseRecord, Store, database_url
from oaiproxy.store.database import MIGRATIONS, head_revision, migrate
from oaiproxy.store.schema import Base, Message, Thread

REPO = Path(__file__).resolve().parents[2]


def url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def record(rid: str, previous: str | None = None, **extra: object) -> ResponseRecord:
    return ResponseRecord(id=rid, model="m", status="completed", previous_response_id=previous,
                          input_items=[{"id": f"msg_{rid}", "type": "message", "role": "user",
                                        "content": [{"type": "input_text", "text": f"question {rid} — é"}]}],
                          output_items=[{"id": f"out_{rid}", "type": "message", "role": "assistant",
                                         "status": "completed",
                                         "content": [{"type": "output_text", "text": f"answer {rid}"}]}],
                          response={"instructions": None, "tools": [], "metadata": {"k": "v"}},
                          usage={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}, **extra)  # type: ignore[arg-type]


async def test_a_new_file_is_migrated_to_head_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "oaiproxy.db"  # the folder is made
    store = await Store.open(url(path))
    await store.close()
    assert {"threads", "messages", "responses", "conversation_items", "alembic_version"} <= tables(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == head_revision() == "0002"


async def test_the_migrations_make_the_schema_the_models_describe(tmp_path: Path) -> None:
    db = await Database.open(url(tmp_path / "s.db"))
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(lambda sync: compare_metadata(
            MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata))
    await db.close()
    assert diff == []


async def test_a_response_round_trips_and_a_chain_is_walked_oldest_first(tmp_path: Path) -> None:
    store = await Store.open(url(tmp_path / "r.db"))
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    await store.responses.save(record("r1", created_at=created, user="ana"))
    await store.responses.save(record("r2", "r1"))
    await store.responses.save(record("r3", "r2"))
    await store.close()

    store = await Store.open(url(tmp_path / "r.db"))  # what was saved is on disk, not in a cache
    got = await store.responses.get("r1")
    assert got == record("r1", created_at=created, user="ana")
    assert got.created_at.tzinfo is not None and got.created_at == created
    chain = await store.responses.chain("r3")
    assert [r.id for r in chain.records] == ["r1", "r2", "r3"] and chain.missing is None
    assert [r.id for r in (await store.responses.chain("r3", limit=2)).records] == ["r2", "r3"]
    assert await store.responses.get("nope") is None
    assert (await store.responses.chain("nope")).missing == "nope"

    assert await store.responses.delete("r2") is True
    assert await store.responses.delete("r2") is False
    broken = await store.responses.chain("r3")
    assert [r.id for r in broken.records] == ["r3"] and broken.missing == "r2"
    await store.close()


async def test_saving_an_id_twice_is_refused_as_unavailable_not_a_crash(tmp_path: Path) -> None:
    store = await Store.open(url(tmp_path / "d.db"))
    await store.responses.save(record("r1"))
    from oaiproxy.store import StoreUnavailable

    with pytest.raises(StoreUnavailable) as info:
        await store.responses.save(record("r1"))
    assert info.value.status == 503 and info.value.code == "store_unavailable"
    await store.close()


async def test_threads_keep_messages_in_order_one_per_position_and_go_with_their_thread(tmp_path: Path) -> None:
    db = await Database.open(url(tmp_path / "t.db"))
    async with db.session(write=True) as s:
        s.add(Thread(id="thr_1", name="kitchen", user="ana"))
        await s.flush()
        s.add_all([Message(thread_id="thr_1", position=1, role="assistant", content="",
                           tool_calls=[{"id": "c1", "type": "function",
                                        "function": {"name": "timer", "arguments": '{"min": 5}'}}],
                           reasoning="needs a timer", output_tokens=9),
                   Message(thread_id="thr_1", position=0, role="user", user="ana", content="set a timer"),
                   Message(thread_id="thr_1", position=2, role="tool", tool_call_id="c1", content="set")])
    async with db.session() as s:
        rows = (await s.execute(select(Message).where(Message.thread_id == "thr_1")
                                .order_by(Message.position))).scalars().all()
        assert [(m.role, m.content) for m in rows] == [("user", "set a timer"), ("assistant", ""), ("tool", "set")]
        assert rows[1].tool_calls[0]["function"]["name"] == "timer" and rows[2].tool_call_id == "c1"
        assert rows[0].content_type == "text/plain" and rows[0].created_at.tzinfo is not None

    # a second run appending at a taken position cannot commit: concurrent runs are detected, not interleaved
    with pytest.raises(IntegrityError):
        async with db._sessions() as s, s.begin():
            s.add(Message(thread_id="thr_1", position=2, role="user", content="late"))
    from oaiproxy.store import StoreUnavailable

    with pytest.raises(StoreUnavailable):  # and through session(): a 503, never a 500
        async with db.session(write=True) as s:
            s.add(Message(thread_id="thr_9", position=0, role="user", content="no such thread"))

    async with db.session(write=True) as s:
        await s.delete(await s.get(Thread, "thr_1"))
    async with db.session() as s:
        assert (await s.execute(select(Message))).scalars().all() == []  # foreign keys are on: cascaded
    await db.close()


NEXT_REVISION = '''
"""A later schema: responses get a column."""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("responses") as batch:
        batch.add_column(sa.Column("tag", sa.String(32), nullable=True))
        batch.alter_column("model", type_=sa.String(512))


def downgrade() -> None:
    with op.batch_alter_table("responses") as batch:
        batch.drop_column("tag")
'''


async def test_a_schema_change_on_an_existing_database_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = await Store.open(url(path))
    await store.responses.save(record("r1"))
    await store.responses.save(record("r2", "r1"))
    await store.close()
    before = sqlite3.connect(path).execute("SELECT * FROM responses ORDER BY id").fetchall()

    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "r0003_tag.py").write_text(NEXT_REVISION)
    db = await Database.open(url(path), migrate_to=None)
    await migrate(db.engine, scripts=scripts)  # batch mode: SQLite's table is copied, rows and all
    await db.close()

    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0003"
        after = conn.execute("SELECT * FROM responses ORDER BY id").fetchall()
        columns = [row[1] for row in conn.execute("PRAGMA table_info(responses)")]
    assert columns[-1] == "tag" and [row[:-1] for row in after] == before and all(row[-1] is None for row in after)

    # this oaiproxy's newest migration is older than the database's: it refuses to run on a schema it doesn't know
    with pytest.raises(ConfigError, match="^--db-url: .* schema this oaiproxy does not know .*'0003'"):
        await Store.open(url(path))
    db = await Database.open(url(path), migrate_to=None)  # the data is untouched and still reads
    assert [r.id for r in (await Store(db).responses.chain("r2")).records] == ["r1", "r2"]
    await db.close()


def test_proxies_starting_together_on_a_fresh_file_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    code = ("import asyncio, sys; from oaiproxy.store import Store\n"
            "async def main():\n"
            "    s = await Store.open(sys.argv[1]); await s.close()\n"
            "asyncio.run(main())\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, url(path)], cwd=REPO, stderr=subprocess.PIPE)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1


def test_the_default_database_is_a_file_in_the_data_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Settings().data_dir == tmp_path / "xdg" / "oaiproxy"
    assert database_url(Settings()) == f"sqlite+aiosqlite:///{tmp_path / 'xdg' / 'oaiproxy' / 'oaiproxy.db'}"
    assert database_url(Settings(data_dir=tmp_path / "d")) == f"sqlite+aiosqlite:///{tmp_path / 'd' / 'oaiproxy.db'}"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert Settings().data_dir == Path.home() / ".local" / "share" / "oaiproxy"
    assert database_url(Settings(db_url="postgresql+asyncpg://u:p@h/db")) == "postgresql+asyncpg://u:p@h/db"


@pytest.mark.parametrize("bad, words", [
    ("not a url", "not a database URL"),
    ("nosuchdb+driver://x/y", "cannot use"),
    ("postgresql+asyncpg://oai:secret-pw@127.0.0.1:9/db", "127.0.0.1:9"),
])
async def test_a_database_that_cannot_be_opened_is_a_config_error_naming_the_option(bad: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        await Store.open(bad)
    message = str(info.value)
    assert message.startswith("--db-url: ") and words in message and "secret-pw" not in message, message


async def test_an_unwritable_data_directory_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(ConfigError, match="^--db-url: cannot create the folder"):
        await Store.open(url(blocker / "sub" / "x.db"))
    (tmp_path / "x.db").write_text("this is not a database, and it is long enough to be read as one........")
    with pytest.raises(ConfigError, match="^--db-url: cannot open the database"):
        await Store.open(url(tmp_path / "x.db"))


def test_migrations_ship_inside_the_package() -> None:
    assert MIGRATIONS.is_relative_to(REPO / "oaiproxy")
    assert (MIGRATIONS / "env.py").is_file() and (MIGRATIONS / "script.py.mako").is_file()
    assert sorted(p.name for p in (MIGRATIONS / "versions").glob("r*.py")) == ["r0001_initial.py",
                                                                                  "r0002_conversation_items.py"]


def test_gather_open_in_one_process(tmp_path: Path) -> None:
    async def main() -> None:
        stores = await asyncio.gather(*(Store.open(url(tmp_path / "g.db")) for _ in range(3)))
        for store in stores:
            await store.close()

    asyncio.run(main())
    assert "responses" in tables(tmp_path / "g.db")
