"""Responses kept in the store, through the official openai SDK, on a scripted llama-server and a real SQLite file:
``store`` (default on), ``previous_response_id`` chains (text, and a function call with its output), retrieve,
delete, ``input_items`` pages, 404s naming the field, and the database going away (503, an ``error`` event in a
stream, nothing acknowledged that was not committed) and coming back.

The stand-in and the real app are the Messages tests' (tests/api/messages/conftest.py); what the model was
asked is the stand-in's record of each /completion body, so a chain's history is checked in the prompt itself.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient
from openai import AsyncOpenAI

from oaiproxy.api.app import ProxyState, create_app
from oaiproxy.runtime.upstream import Admission, LlamaServerClient
from oaiproxy.settings import Settings
from oaiproxy.store import Store
from tests.api.messages.conftest import CALL, Script, stand_in
from tests.stand_in_app import hermes_engine

MODEL = "m"
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@dataclass
class Stateful:
    script: Script
    http: TestClient[Any, Any]
    sdk: AsyncOpenAI
    db: Path | None
    store: Store | None

    def prompt(self) -> str:
        return str([b for b in self.script.bodies if "prompt" in b][-1]["prompt"])

    def asked(self) -> int:
        return sum("prompt" in b for b in self.script.bodies)


async def _proxy(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path, db: Path | None) -> Stateful:
    script = Script()
    server = await aiohttp_server(stand_in(script))
    upstream = LlamaServerClient(str(server.make_url("")), admission=Admission(slots=2, max_queue=8))
    s = Settings()
    engine = hermes_engine(templates_dir, upstream, MODEL, s)
    store = await Store.open(f"sqlite+aiosqlite:///{db}") if db is not None else None
    state = ProxyState(engine=engine, client=upstream, model_ids=[MODEL], request_timeout=20, api_key=None,
                       cors_origins=[], store=store)
    http = await aiohttp_client(create_app(state, max_body_bytes=s.max_body_bytes))
    sdk = AsyncOpenAI(base_url=str(http.server.make_url("/v1")), api_key="unused", max_retries=0)
    return Stateful(script, http, sdk, db, store)


@pytest.fixture
async def kept(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path,
               tmp_path: Path) -> AsyncIterator[Stateful]:
    """The app with a store on a fresh SQLite file (not named ``proxy``: that is the real proxy's fixture)."""
    p = await _proxy(aiohttp_client, aiohttp_server, templates_dir, tmp_path / "state.db")
    yield p
    await p.sdk.close()
    assert p.store is not None
    await p.store.close()


@pytest.fixture
async def stateless(aiohttp_client: Any, aiohttp_server: Any, templates_dir: Path) -> AsyncIterator[Stateful]:
    p = await _proxy(aiohttp_client, aiohttp_server, templates_dir, None)
    yield p
    await p.sdk.close()


# ---------------------------------------------------------------- chains


async def test_a_stored_response_is_retrieved_and_continued(kept: Stateful) -> None:
    kept.script.pieces = ["Paris is sunny", " today."]
    first = await kept.sdk.responses.create(model=MODEL, input="Weather in Paris?", instructions="Be brief.")
    assert first.store is True and first.previous_response_id is None

    got = await kept.sdk.responses.retrieve(first.id)
    assert got.id == first.id and got.output_text == "Paris is sunny today." == first.output_text
    assert got.instructions == "Be brief." and got.usage is not None
    assert got.usage.output_tokens == first.usage.output_tokens  # type: ignore[union-attr]

    kept.script.pieces = ["Rome", " too."]
    second = await kept.sdk.responses.create(model=MODEL, input="And Rome?", previous_response_id=first.id)
    assert second.previous_response_id == first.id and second.output_text == "Rome too."
    prompt = kept.prompt()
    # the chain's items are the history, in order, after this request's instructions (none: not inherited)
    turns = ["<|im_start|>user\nWeather in Paris?", "<|im_start|>assistant\nParis is sunny today.",
             "<|im_start|>user\nAnd Rome?"]
    at = [prompt.index(t) for t in turns]
    assert at == sorted(at) and "Be brief." not in prompt

    kept.script.pieces = ["Both", " fine."]
    third = await kept.sdk.responses.create(model=MODEL, input="Both?", previous_response_id=second.id,
                                             stream=True)
    events = [e async for e in third]
    assert events[-1].type == "response.completed" and events[-1].response.store is True
    assert events[0].response.previous_response_id == second.id
    prompt = kept.prompt()
    assert all(t in prompt for t in [*turns, "<|im_start|>assistant\nRome too.", "<|im_start|>user\nBoth?"])
    streamed = await kept.sdk.responses.retrieve(events[-1].response.id)
    assert streamed.output_text == "Both fine." and streamed.status == "completed"


async def test_a_function_call_and_its_output_continue_from_the_stored_call(kept: Stateful) -> None:
    kept.script.pieces = CALL
    first = await kept.sdk.responses.create(model=MODEL, input="Weather in Paris?", tools=[WEATHER],  # type: ignore[list-item]
                                             tool_choice="required")
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather"

    kept.script.pieces = ["It is", " sunny."]
    second = await kept.sdk.responses.create(
        model=MODEL, previous_response_id=first.id, tools=[WEATHER],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}])
    assert second.output_text == "It is sunny."
    prompt = kept.prompt()
    asked = prompt.index("<|im_start|>user\nWeather in Paris?")
    called = prompt.index('<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}')
    answered = prompt.index("<tool_response>\nsunny, 21 C\n</tool_response>")
    assert asked < called < answered

    items = [item async for item in kept.sdk.responses.input_items.list(second.id, order="asc")]
    assert [(i.type, i.call_id, i.output) for i in items] == [("function_call_output", call.call_id,  # type: ignore[union-attr]
                                                               "sunny, 21 C")]


async def test_store_false_keeps_nothing_and_unknown_ids_are_404s_naming_the_field(kept: Stateful) -> None:
    kept_before = kept.asked()
    off = await kept.sdk.responses.create(model=MODEL, input="Hi", store=False)
    assert off.store is False
    with pytest.raises(openai.NotFoundError) as info:
        await kept.sdk.responses.retrieve(off.id)
    assert info.value.body["param"] == "response_id"  # type: ignore[index]

    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as info:
            await kept.sdk.responses.create(model=MODEL, input="Go on", previous_response_id=off.id, stream=stream)
        body: Any = info.value.body
        assert body["param"] == "previous_response_id" and body["code"] == "previous_response_not_found"
        assert off.id in body["message"]
    assert kept.asked() == kept_before + 1  # the model never ran for the refused continuations
    with sqlite3.connect(kept.db) as conn:  # type: ignore[arg-type]
        assert conn.execute("SELECT count(*) FROM responses").fetchone()[0] == 0


async def test_delete_forgets_a_response_and_its_continuations_then_say_so(kept: Stateful) -> None:
    first = await kept.sdk.responses.create(model=MODEL, input="One")
    second = await kept.sdk.responses.create(model=MODEL, input="Two", previous_response_id=first.id)
    status, body = await _delete(kept, first.id)
    assert status == 200 and body == {"id": first.id, "object": "response", "deleted": True}
    await kept.sdk.responses.delete(second.id)  # the SDK's own call
    for rid in (first.id, second.id):
        with pytest.raises(openai.NotFoundError):
            await kept.sdk.responses.retrieve(rid)
    with pytest.raises(openai.NotFoundError):
        await kept.sdk.responses.delete(first.id)

    third = await kept.sdk.responses.create(model=MODEL, input="Three")
    fourth = await kept.sdk.responses.create(model=MODEL, input="Four", previous_response_id=third.id)
    await kept.sdk.responses.delete(third.id)
    with pytest.raises(openai.NotFoundError) as info:
        await kept.sdk.responses.create(model=MODEL, input="Five", previous_response_id=fourth.id)
    message = info.value.body["message"]  # type: ignore[index]
    assert fourth.id in message and third.id in message and "gone" in message


async def _delete(p: Stateful, rid: str) -> tuple[int, Any]:
    response = await p.http.delete(f"/v1/responses/{rid}")
    return response.status, await response.json()


# ---------------------------------------------------------------- input items


async def test_input_items_are_listed_newest_first_in_pages(kept: Stateful) -> None:
    sent = [{"role": "user", "content": f"message {i}"} for i in range(5)]
    sent[2] = {"type": "message", "role": "user", "id": "msg_mine",
               "content": [{"type": "input_text", "text": "message 2"}]}
    res = await kept.sdk.responses.create(model=MODEL, input=sent)  # type: ignore[arg-type]

    page = await kept.sdk.responses.input_items.list(res.id, limit=2)
    texts = [item.content[0].text for item in page.data]  # type: ignore[union-attr]
    assert texts == ["message 4", "message 3"] and page.has_more is True
    assert page.first_id == page.data[0].id and page.last_id == page.data[1].id
    everything = [item async for item in kept.sdk.responses.input_items.list(res.id, limit=2, order="asc")]
    assert [item.content[0].text for item in everything] == [f"message {i}" for i in range(5)]  # type: ignore[union-attr]
    assert everything[2].id == "msg_mine" and len({item.id for item in everything}) == 5
    assert all(item.type == "message" and item.role == "user" for item in everything)  # type: ignore[union-attr]

    last = await kept.sdk.responses.input_items.list(res.id, limit=2, order="asc", after=everything[3].id)
    assert [item.id for item in last.data] == [everything[4].id] and last.has_more is False

    for query, param in (("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"), ("order=up", "order"),
                         ("after=msg_nope", "after")):
        response = await kept.http.get(f"/v1/responses/{res.id}/input_items?{query}")
        assert response.status == 400 and (await response.json())["error"]["param"] == param, query
    response = await kept.http.get("/v1/responses/resp_nope/input_items")
    assert response.status == 404 and (await response.json())["error"]["param"] == "response_id"


async def test_a_string_input_is_listed_as_one_user_message(kept: Stateful) -> None:
    res = await kept.sdk.responses.create(model=MODEL, input="Just this")
    page = await kept.sdk.responses.input_items.list(res.id)
    assert len(page.data) == 1
    item: Any = page.data[0]
    assert (item.type, item.role, item.content[0].type, item.content[0].text) == ("message", "user", "input_text",
                                                                                 "Just this")
    assert item.id.startswith("msg_")


# ---------------------------------------------------------------- the database going away


async def test_a_database_gone_is_a_503_and_nothing_unsaved_is_acknowledged(kept: Stateful) -> None:
    before = await kept.sdk.responses.create(model=MODEL, input="Before")
    with sqlite3.connect(kept.db) as conn:  # type: ignore[arg-type]
        conn.execute("ALTER TABLE responses RENAME TO responses_away")

    with pytest.raises(openai.InternalServerError) as info:
        await kept.sdk.responses.create(model=MODEL, input="Lost")
    assert info.value.status_code == 503 and info.value.body["code"] == "store_unavailable"  # type: ignore[index]
    events = [e async for e in await kept.sdk.responses.create(model=MODEL, input="Lost too", stream=True)]
    assert "response.completed" not in [e.type for e in events]  # never told it is complete
    assert events[-1].type == "error" and events[-1].code == "store_unavailable"  # type: ignore[union-attr]
    with pytest.raises(openai.InternalServerError):
        await kept.sdk.responses.retrieve(before.id)
    with pytest.raises(openai.InternalServerError):
        await kept.sdk.responses.create(model=MODEL, input="On", previous_response_id=before.id)

    with sqlite3.connect(kept.db) as conn:  # type: ignore[arg-type]
        conn.execute("ALTER TABLE responses_away RENAME TO responses")
        assert conn.execute("SELECT count(*) FROM responses").fetchone()[0] == 1  # the lost ones were never kept
    back = await kept.sdk.responses.create(model=MODEL, input="After", previous_response_id=before.id)
    assert (await kept.sdk.responses.retrieve(back.id)).previous_response_id == before.id
    assert "Before" in kept.prompt()


# ---------------------------------------------------------------- without a store


async def test_without_a_store_asking_for_one_is_a_400_and_omitting_it_keeps_nothing(stateless: Stateful) -> None:
    res = await stateless.sdk.responses.create(model=MODEL, input="Hi")
    assert res.store is False and res.output_text == "Hello there."
    for extra, param in (({"store": True}, "store"), ({"previous_response_id": res.id}, "previous_response_id")):
        with pytest.raises(openai.BadRequestError) as info:
            await stateless.sdk.responses.create(model=MODEL, input="Hi", **extra)
        assert info.value.body["param"] == param  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as missing:
        await stateless.sdk.responses.retrieve(res.id)
    assert "without a response store" in missing.value.body["message"]  # type: ignore[index]
