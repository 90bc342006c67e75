"""PikoBrain's threads through the real app, on a scripted llama-server stand-in and a real SQLite store.

The stand-in writes what each round's model says and records each prompt, so these tests pin what a
thread gives the model (its history, in order, cut at the brain's depth), what is kept after a run
(the user's messages, the server-tool steps and the answer, or nothing when the run failed), and how
concurrent runs on one thread behave: in order in one proxy, a 409 ``thread_busy`` when another proxy
on the same database appended first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from oaiproxy.api.app import STATE, ProxyState, create_app
from oaiproxy.runtime.upstream import Admission, LlamaServerClient
from oaiproxy.server_tools.catalog import ToolCatalog
from oaiproxy.store import Store, ThreadBusy
from oaiproxy.store.threads import NewMessage
from tests.server_tools.service import SPEC, running_service
from tests.server_tools.stand_in import Rounds, call, stand_in
from tests.stand_in_app import hermes_engine

MODEL = "m"
KEY = "sk-thread-test-5c2d"
AUTH = {"Authorization": f"Bearer {KEY}"}


BRAINS = {
    "chat": {"system_prompt": "You are Chat."},
    "short": {"history_depth": 3},
    "petbot": {"tools": ["pets_getPet"], "max_iterations": 2},
}


@dataclass
class Setup:
    rounds: Rounds
    http: TestClient[Any, Any]
    store: Store
    db: Path
    upstream: LlamaServerClient


@pytest.fixture
async def setup(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path, tmp_path: Path) -> AsyncIterator[Setup]:
    async with running_service() as service:
        rounds = Rounds()
        server = await aiohttp_server(stand_in(rounds))
        upstream = LlamaServerClient(str(server.make_url("")), admission=Admission(slots=2, max_queue=16))
        engine = hermes_engine(templates_dir, upstream, MODEL)
        (tmp_path / "pets.json").write_text(json.dumps(SPEC))
        tools = tmp_path / "tools.yaml"
        tools.write_text(json.dumps({"sources": [{"type": "openapi", "url": "pets.json", "namespace": "pets",
                                                  "base_url": service + "/api", "timeout": 1,
                                                  "headers": {"X-Api-Key": {"value": "s3cret"}}}],
                                     "brains": BRAINS}))
        catalog = await ToolCatalog.open(tools)
        db = tmp_path / "threads.db"
        store = await Store.open(f"sqlite+aiosqlite:///{db}")
        state = ProxyState(engine=engine, client=upstream, model_ids=[MODEL], request_timeout=20, api_key=KEY,
                           cors_origins=[], catalog=catalog, store=store)
        http = await aiohttp_client(create_app(state, max_body_bytes=1 << 20))
        yield Setup(rounds, http, store, db, upstream)
        await store.close()
        await upstream.close()


async def post(s: Setup, path: str, body: str | bytes | aiohttp.FormData = "", method: str = "POST",
               **headers: str) -> tuple[int, aiohttp.ClientResponse, str]:
    resp = await s.http.request(method, path, data=body, headers={**AUTH, **headers})
    return resp.status, resp, await resp.text()


async def messages(s: Setup, name: str, query: str = "?limit=100") -> list[dict[str, Any]]:
    resp = await s.http.get(f"/{name}{query}", headers=AUTH)
    assert resp.status == 200, await resp.text()
    data: list[dict[str, Any]] = (await resp.json())["data"]
    return data


def said(msgs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in msgs]


async def test_a_thread_runs_keeps_and_reads_back_its_turns_in_order(setup: Setup) -> None:
    setup.rounds.texts = ["Hi Ann.", "You said hello."]
    status, resp, text = await post(setup, "/t1?brain=chat&user=ann", "Hello, I am Ann.")
    assert status == 200 and text == "Hi Ann."
    assert resp.headers["X-Run-Context"] == "1" and resp.headers["X-Run-Input-Tokens"] == "40"
    status, resp, text = await post(setup, "/t1?brain=chat", "What did I say?")
    assert status == 200 and text == "You said hello."
    assert resp.headers["X-Run-Context"] == "3"
    # the second run read the first turn, in order, before the new question
    prompt = setup.rounds.prompts[-1]
    assert prompt.index("You are Chat.") < prompt.index("Hello, I am Ann.") < prompt.index("Hi Ann.") \
        < prompt.index("What did I say?")
    msgs = await messages(setup, "t1")
    assert said(msgs) == [("user", "Hello, I am Ann."), ("assistant", "Hi Ann."), ("user", "What did I say?"),
                          ("assistant", "You said hello.")]
    assert [m["position"] for m in msgs] == [0, 1, 2, 3] and msgs[0]["user"] == "ann"
    assert msgs[1]["usage"] == {"input_tokens": 40, "output_tokens": 5} and "usage" not in msgs[0]


async def test_put_adds_without_running_and_an_empty_post_runs_on_the_history(setup: Setup) -> None:
    form = aiohttp.FormData()
    form.add_field("a", "Remember: the code is 41.", content_type="text/plain")
    status, resp, text = await post(setup, "/notes", form, method="PUT")
    assert status == 200, text
    assert json.loads(text) == {"object": "thread.messages.added", "thread": "notes", "added": 1,
                                "first_position": 0, "last_position": 0}
    assert setup.rounds.prompts == []  # nothing ran
    await post(setup, "/notes", "And one more thing.", method="PUT", **{"Content-Type": "text/plain"})
    setup.rounds.texts = ["Noted: 41."]
    status, _, text = await post(setup, "/notes?brain=chat")  # no body: it runs on what the thread holds
    assert status == 200 and text == "Noted: 41."
    assert "the code is 41." in setup.rounds.prompts[-1] and "And one more thing." in setup.rounds.prompts[-1]
    assert said(await messages(setup, "notes"))[-1] == ("assistant", "Noted: 41.")
    # a run of nothing is refused, naming the body
    status, _, text = await post(setup, "/empty?brain=chat")
    assert status == 400 and json.loads(text)["error"]["param"] == "body"
    status, _, text = await post(setup, "/empty", method="PUT")
    assert status == 400 and json.loads(text)["error"]["param"] == "body"


async def test_the_brains_history_depth_cuts_the_oldest_turns(setup: Setup) -> None:
    for i in range(3):
        await post(setup, "/deep?brain=short", f"question {i}", method="PUT")
    setup.rounds.texts = ["ok"]
    status, resp, _ = await post(setup, "/deep?brain=short", "question 3")
    assert status == 200 and resp.headers["X-Run-Context"] == "3"
    prompt = setup.rounds.prompts[-1]
    assert "question 0" not in prompt and "question 1 " not in prompt
    assert prompt.index("question 1") < prompt.index("question 2") < prompt.index("question 3")
    assert len(await messages(setup, "deep")) == 5  # the store keeps everything; only the prompt is cut


async def test_a_brains_tool_steps_are_kept_as_messages_and_read_by_the_next_run(setup: Setup) -> None:
    setup.rounds.texts = [call("pets_getPet", {"path": {"pet_id": 7}}), "Pet 7 is Rex.", "Still Rex."]
    status, _, text = await post(setup, "/pets?brain=petbot", "What is pet 7?")
    assert status == 200 and text == "Pet 7 is Rex."
    msgs = await messages(setup, "pets")
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
    assert msgs[1]["tool_calls"][0]["function"]["name"] == "pets_getPet"
    assert msgs[2]["tool_call_id"] == msgs[1]["tool_calls"][0]["id"] and json.loads(msgs[2]["content"])["name"] == "Rex"
    assert msgs[2]["content_type"] == "application/json"
    assert msgs[3]["usage"] == {"input_tokens": 80, "output_tokens": 10}  # both rounds
    status, _, _ = await post(setup, "/pets?brain=petbot", "And again?")
    assert status == 200 and '"name": "Rex"' in setup.rounds.prompts[-1]  # the stored result reached the model


async def test_pages_go_forward_and_back_by_position(setup: Setup) -> None:
    for i in range(5):
        await post(setup, "/paged", f"m{i}", method="PUT")
    resp = await setup.http.get("/paged?limit=2", headers=AUTH)
    page = await resp.json()
    assert page["object"] == "list" and [m["content"] for m in page["data"]] == ["m0", "m1"]
    assert page["first_id"] == 0 and page["last_id"] == 1 and page["has_more"] is True
    page = await (await setup.http.get("/paged?limit=2&after=1", headers=AUTH)).json()
    assert [m["content"] for m in page["data"]] == ["m2", "m3"] and page["has_more"] is True
    page = await (await setup.http.get("/paged?limit=2&after=3", headers=AUTH)).json()
    assert [m["content"] for m in page["data"]] == ["m4"] and page["has_more"] is False
    page = await (await setup.http.get("/paged?limit=2&order=desc&before=4", headers=AUTH)).json()
    assert [m["content"] for m in page["data"]] == ["m3", "m2"] and page["has_more"] is True
    for query, param in (("?limit=0", "limit"), ("?after=x", "after"), ("?order=up", "order")):
        resp = await setup.http.get("/paged" + query, headers=AUTH)
        assert resp.status == 400 and (await resp.json())["error"]["param"] == param


async def test_delete_forgets_a_thread_and_unknown_threads_are_404s(setup: Setup) -> None:
    await post(setup, "/gone", "hello", method="PUT")
    resp = await setup.http.delete("/gone", headers=AUTH)
    assert resp.status == 200 and await resp.json() == {"id": "gone", "object": "thread.deleted", "deleted": True}
    for method in ("GET", "DELETE"):
        resp = await setup.http.request(method, "/gone", headers=AUTH)
        body = await resp.json()
        assert resp.status == 404 and body["error"]["param"] == "thread" and body["error"]["code"] == "thread_not_found"
    # made anew, it starts from nothing
    await post(setup, "/gone", "again", method="PUT")
    assert said(await messages(setup, "gone")) == [("user", "again")]


async def test_the_proxys_own_routes_win_and_their_names_are_not_threads(setup: Setup) -> None:
    assert (await setup.http.get("/openapi.json")).status == 200  # open, no key
    resp = await setup.http.get("/health")  # the health route answered (the stand-in has no /health: 503)
    assert "upstream" in await resp.json()
    resp = await setup.http.get("/v1/models", headers=AUTH)
    assert resp.status == 200 and (await resp.json())["object"] == "list"
    for name in ("health", "openapi.json", "v1"):
        for method in ("POST", "PUT"):
            status, _, text = await post(setup, f"/{name}", "hi", method=method)
            assert status == 400 and json.loads(text)["error"]["param"] == "thread", (name, method, text)
            assert "own routes" in json.loads(text)["error"]["message"]
    for bad in ("-dash", "a" * 129, "sp%20ace"):
        status, _, text = await post(setup, f"/{bad}", "hi", method="PUT")
        assert status == 400 and json.loads(text)["error"]["param"] == "thread", bad
    # the key guards the threads as it guards POST /
    for method in ("GET", "PUT", "POST", "DELETE"):
        resp = await setup.http.request(method, "/t1", data="hi")
        assert resp.status == 401, method


async def test_concurrent_runs_on_one_thread_take_turns_and_lose_nothing(setup: Setup) -> None:
    setup.rounds.texts = [f"answer {i}" for i in range(6)]
    results = await asyncio.gather(*(post(setup, "/busy?brain=chat", f"question {i}") for i in range(6)))
    assert all(status == 200 for status, _, _ in results), results
    msgs = await messages(setup, "busy")
    assert [m["position"] for m in msgs] == list(range(12))
    assert [m["role"] for m in msgs] == ["user", "assistant"] * 6
    # each answer follows its own question, and the answers came in the order the runs took their turns
    answers = [text for _, _, text in results]
    for q, a in zip(msgs[::2], msgs[1::2], strict=True):
        assert answers[int(q["content"].split()[1])] == a["content"]
    assert [a["content"] for a in msgs[1::2]] == [f"answer {i}" for i in range(6)]
    # every run read every earlier turn
    last = setup.rounds.prompts[-1]
    assert all(f"answer {i}" in last for i in range(5))


async def test_another_proxy_appending_during_a_run_makes_it_a_409_that_keeps_nothing(setup: Setup) -> None:
    other = await Store.open(f"sqlite+aiosqlite:///{setup.db}")  # a second proxy on the same database
    try:
        await post(setup, "/shared", "first", method="PUT")

        async def meanwhile() -> None:
            await other.threads.append("shared", await other.threads.history("shared", 0),
                                       [NewMessage(role="user", content="from the other proxy")])

        setup.rounds.during = meanwhile
        status, _, text = await post(setup, "/shared?brain=chat", "second")
        err = json.loads(text)["error"]
        assert status == 409 and err["code"] == "thread_busy" and err["param"] == "thread", text
        assert said(await messages(setup, "shared")) == [("user", "first"), ("user", "from the other proxy")]
    finally:
        await other.close()


async def test_a_stale_append_is_refused_by_the_store(setup: Setup) -> None:
    threads = setup.store.threads
    stale = await threads.history("s", 0)  # no thread yet
    await threads.append("s", stale, [NewMessage(role="user", content="a")])
    with pytest.raises(ThreadBusy):  # created meanwhile
        await threads.append("s", stale, [NewMessage(role="user", content="b")])
    read = await threads.history("s")
    await threads.append("s", read, [NewMessage(role="user", content="c")])
    with pytest.raises(ThreadBusy):  # appended meanwhile
        await threads.append("s", read, [NewMessage(role="user", content="d")])
    await threads.delete("s")
    with pytest.raises(ThreadBusy):  # deleted meanwhile
        await threads.append("s", read, [NewMessage(role="user", content="e")])
    assert await threads.page("s", limit=10) is None


async def test_a_failed_run_leaves_the_thread_as_it_was(setup: Setup) -> None:
    setup.rounds.texts = ["fine"]
    await post(setup, "/fragile?brain=chat", "one")
    setup.rounds.fail = True
    status, _, text = await post(setup, "/fragile?brain=chat", "two")
    assert status >= 500 and "error" in json.loads(text)
    assert said(await messages(setup, "fragile")) == [("user", "one"), ("assistant", "fine")]


async def test_without_a_store_threads_are_a_clear_400(setup: Setup, aiohttp_client: Any) -> None:
    state = setup.http.app[STATE]
    bare = ProxyState(engine=state.engine, client=state.client, model_ids=[MODEL], request_timeout=5, api_key=None,
                      cors_origins=[], catalog=state.catalog)
    http = await aiohttp_client(create_app(bare, max_body_bytes=1 << 20))
    for method in ("GET", "PUT", "POST", "DELETE"):
        resp = await http.request(method, "/t", data="hi")
        body = await resp.json()
        assert resp.status == 400 and body["error"]["code"] == "store_disabled", (method, body)


async def test_a_thread_longer_than_the_context_runs_on_its_latest_turns_and_keeps_them_all(setup: Setup) -> None:
    setup.upstream.context_per_slot = 8000  # the stand-in counts a token per character
    with aiohttp.MultipartWriter("form-data") as mp:
        for i in range(40):
            mp.append(f"turn {i:03d} " + "x" * 300, {"X-Role": "user" if i % 2 == 0 else "assistant"})
    status, _, text = await post(setup, "/long?brain=chat", mp, method="PUT")
    assert status == 200, text
    setup.rounds.texts = ["fine"]
    status, _, text = await post(setup, "/long?brain=chat", b"the newest question",
                                 **{"Content-Type": "text/plain"})
    assert status == 200 and text == "fine"
    prompt = setup.rounds.prompts[-1]
    assert len(prompt) <= 8000 - 1024 and "the newest question" in prompt and "You are Chat." in prompt
    assert "turn 000" not in prompt and "turn 039" in prompt
    kept = [i for i in range(40) if f"turn {i:03d}" in prompt]
    assert kept == list(range(kept[0], 40)) and len(kept) >= 3
    assert len(await messages(setup, "long")) == 42  # the store keeps every turn; only the prompt is cut
