"""Several models in one proxy, on stand-in llama-servers, through the real app: a model is loaded on first
use, the least recently used idle one unloaded beyond ``max_loaded``, a model with a request running never;
a request for a loading model waits for it (a 503 past the load timeout); an unknown model is a 404 in each
API's error shape, naming the ids; ``/v1/models`` and ``/health`` list every declared model.

Each model is a :class:`ServedModel` with the proxy's Hermes engine; "loading" it starts a stand-in
llama-server (tests/scaling/stand_in.py) whose answer names the model, and unloading it closes that server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from oaiproxy.api.app import ProxyState, create_app
from oaiproxy.api.chat.serving import ChatEngine
from oaiproxy.api.completions.serving import CompletionEngine
from oaiproxy.runtime.models import ModelSet, Running, ServedModel
from oaiproxy.runtime.upstream import Admission, LlamaServerClient
from tests.scaling.stand_in import Replica, replica_app
from tests.stand_in_app import hermes_engine

IDS = ["alpha", "beta", "gamma"]


class StandInServer:
    """A loaded model's stand-in llama-server; :meth:`stop` is the unload."""

    def __init__(self, stage: Stage, model_id: str, server: TestServer):
        self.stage, self.model_id, self.server = stage, model_id, server
        #: as a ManagedServer's: "failed" once its supervisor gave up on it
        self.state = "ready"

    async def stop(self) -> None:
        self.stage.events.append(f"unload {self.model_id}")
        await self.server.close()


@dataclass
class Stage:
    http: TestClient[Any, Any]
    models: ModelSet[ChatEngine, CompletionEngine]
    replicas: dict[str, Replica]
    #: "load X" / "loaded X" / "unload X", in order
    events: list[str] = field(default_factory=list)
    #: a model's launch waits for its gate (a test holds a load under way)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    #: launches of a model that fail before one works
    failures: dict[str, int] = field(default_factory=dict)
    #: each model's stand-in URLs, one per load
    urls: dict[str, list[str]] = field(default_factory=dict)

    def loads(self, model_id: str) -> int:
        return self.events.count(f"loaded {model_id}")


async def build(templates_dir: Path, *, max_loaded: int, load_timeout: float = 10.0,
                ids: list[str] = IDS) -> Stage:
    served = []
    for model_id in ids:
        client = LlamaServerClient("http://127.0.0.1:9", admission=Admission(slots=2, max_queue=8))
        served.append(ServedModel(model_id, hermes_engine(templates_dir, client, model_id),
                                  CompletionEngine(client, model_id), client))
    stage: Stage

    async def launch(model: ServedModel[ChatEngine, CompletionEngine]) -> Running:
        stage.events.append(f"load {model.id}")
        gate = stage.gates.get(model.id)
        if gate is not None:
            await gate.wait()
        if stage.failures.get(model.id):
            stage.failures[model.id] -= 1
            raise RuntimeError(f"llama-server exited with code 1 while loading {model.id}")
        server = TestServer(replica_app(stage.replicas[model.id]), host="127.0.0.1")
        await server.start_server()
        model.client.base_url = str(server.make_url("")).rstrip("/")
        stage.urls.setdefault(model.id, []).append(model.client.base_url)
        stage.events.append(f"loaded {model.id}")
        return StandInServer(stage, model.id, server)

    models = ModelSet(served, launch, max_loaded=max_loaded, load_timeout=load_timeout)
    first = served[0]
    state = ProxyState(engine=first.engine, client=first.client, model_ids=models.ids, request_timeout=20,
                       api_key=None, cors_origins=[], completions=first.completions, models=models)
    http: TestClient[Any, Any] = TestClient(TestServer(create_app(state, max_body_bytes=1 << 20)))
    await http.start_server()
    stage = Stage(http, models, {m: Replica(m, text=f"This is {m} speaking.") for m in ids})
    return stage


async def close(stage: Stage) -> None:
    await stage.http.close()
    await stage.models.close()


@pytest.fixture
async def stage_factory(templates_dir: Path) -> AsyncIterator[Callable[..., Any]]:
    stages: list[Stage] = []

    async def make(**kwargs: Any) -> Stage:
        stage = await build(templates_dir, **kwargs)
        stages.append(stage)
        return stage

    yield make
    for stage in stages:
        await close(stage)


async def chat(stage: Stage, model: str, **body: Any) -> tuple[int, Any]:
    resp = await stage.http.post("/v1/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": "Who is there?"}], **body})
    return resp.status, await resp.json()


def said(answer: Any) -> str:
    content: str = answer["choices"][0]["message"]["content"]
    return content


async def health(stage: Stage) -> Any:
    resp = await stage.http.get("/health")
    return await resp.json()


async def states(stage: Stage) -> dict[str, str]:
    return {m["id"]: m["state"] for m in (await health(stage))["models"]}


async def reachable(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(url + "/health") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def test_nothing_loads_before_first_use_and_v1_models_lists_every_model(stage_factory: Any) -> None:
    stage = await stage_factory(max_loaded=1)
    resp = await stage.http.get("/v1/models")
    assert resp.status == 200
    assert [m["id"] for m in (await resp.json())["data"]] == IDS
    for model_id in IDS:
        one = await stage.http.get(f"/v1/models/{model_id}")
        assert one.status == 200 and (await one.json())["id"] == model_id
    assert stage.events == []  # listing loads nothing
    body = await health(stage)
    assert body["status"] == "ok" and body["max_loaded"] == 1
    assert await states(stage) == dict.fromkeys(IDS, "unloaded")
    assert body["upstream"]["state"] == "unloaded"


async def test_the_request_model_picks_the_model_and_loads_it_on_first_use(stage_factory: Any) -> None:
    stage = await stage_factory(max_loaded=3)
    status, answer = await chat(stage, "beta")
    assert status == 200, answer
    assert said(answer) == "This is beta speaking." and answer["model"] == "beta"
    assert stage.events == ["load beta", "loaded beta"]
    assert await states(stage) == {"alpha": "unloaded", "beta": "loaded", "gamma": "unloaded"}
    status, answer = await chat(stage, "beta")  # loaded: not again
    assert status == 200 and stage.loads("beta") == 1
    # no model: the default (the first declared)
    resp = await stage.http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]})
    assert resp.status == 200 and said(await resp.json()) == "This is alpha speaking."
    # the other APIs pick the model the same way
    resp = await stage.http.post("/v1/completions", json={"model": "gamma", "prompt": "Who"})
    body = await resp.json()
    assert resp.status == 200 and body["choices"][0]["text"] == "This is gamma speaking.", body
    resp = await stage.http.post("/v1/messages", json={"model": "beta", "max_tokens": 20,
                                                       "messages": [{"role": "user", "content": "Hi"}]})
    body = await resp.json()
    assert resp.status == 200 and body["content"][0]["text"] == "This is beta speaking.", body
    resp = await stage.http.post("/v1/responses", json={"model": "gamma", "input": "Hi", "store": False})
    body = await resp.json()
    assert resp.status == 200 and body["output"][-1]["content"][0]["text"] == "This is gamma speaking.", body
    assert [stage.loads(m) for m in IDS] == [1, 1, 1]


async def test_beyond_max_loaded_the_least_recently_used_model_is_unloaded(stage_factory: Any) -> None:
    stage = await stage_factory(max_loaded=2)
    assert (await chat(stage, "alpha"))[0] == 200
    assert (await chat(stage, "beta"))[0] == 200
    assert (await chat(stage, "alpha"))[0] == 200  # alpha used last: beta is the least recently used
    beta_url = stage.urls["beta"][-1]
    assert await reachable(beta_url)
    status, answer = await chat(stage, "gamma")
    assert status == 200 and said(answer) == "This is gamma speaking."
    assert stage.events[-3:] == ["unload beta", "load gamma", "loaded gamma"]  # unloaded before the load
    assert await states(stage) == {"alpha": "loaded", "beta": "unloaded", "gamma": "loaded"}
    assert not await reachable(beta_url)  # its server is gone
    # beta again: alpha is now the least recently used
    status, answer = await chat(stage, "beta")
    assert status == 200 and said(answer) == "This is beta speaking."
    assert stage.events[-3:] == ["unload alpha", "load beta", "loaded beta"]
    assert stage.loads("beta") == 2 and len(stage.urls["beta"]) == 2
    views = {m["id"]: m for m in (await health(stage))["models"]}
    assert (views["beta"]["loads"], views["beta"]["unloads"], views["alpha"]["unloads"]) == (2, 1, 1)
    assert views["beta"]["healthy"] is True and views["alpha"]["healthy"] is None


async def test_a_model_with_a_request_running_is_not_unloaded(stage_factory: Any) -> None:
    stage = await stage_factory(max_loaded=1)
    stage.replicas["alpha"].hold = asyncio.Event()
    running = asyncio.create_task(chat(stage, "alpha"))
    while not stage.replicas["alpha"].running:
        await asyncio.sleep(0.01)
    waiting = asyncio.create_task(chat(stage, "beta"))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # beta waits: alpha is the one loaded and it is busy
    assert "unload alpha" not in stage.events and "load beta" not in stage.events
    assert await states(stage) == {"alpha": "loaded", "beta": "unloaded", "gamma": "unloaded"}
    stage.replicas["alpha"].hold.set()
    status, _ = await running
    assert status == 200
    status, answer = await waiting
    assert status == 200 and said(answer) == "This is beta speaking."
    assert stage.events == ["load alpha", "loaded alpha", "unload alpha", "load beta", "loaded beta"]


async def test_a_streamed_answer_holds_its_model_until_the_stream_ends(stage_factory: Any) -> None:
    stage = await stage_factory(max_loaded=1)
    stage.replicas["alpha"].token_delay = 0.05  # six tokens: about 0.3 s of streaming
    resp = await stage.http.post("/v1/chat/completions", json={
        "model": "alpha", "stream": True, "messages": [{"role": "user", "content": "Hi"}]})
    assert resp.status == 200  # the stream has begun, it has not ended
    other = asyncio.create_task(chat(stage, "beta"))
    await asyncio.sleep(0.15)
    assert "unload alpha" not in stage.events and not other.done()  # alpha is still streaming
    text = await resp.text()
    assert text.rstrip().endswith("data: [DONE]")
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) \
        == "This is alpha speaking."
    status, answer = await other
    assert status == 200 and said(answer) == "This is beta speaking."
    assert stage.events == ["load alpha", "loaded alpha", "unload alpha", "load beta", "loaded beta"]


async def test_all_loaded_models_busy_past_the_timeout_is_a_503(stage_factory: Any) -> None:
    stage = await stage_factory(max_loaded=1, load_timeout=0.3)
    stage.replicas["alpha"].hold = asyncio.Event()
    running = asyncio.create_task(chat(stage, "alpha"))
    while not stage.replicas["alpha"].running:
        await asyncio.sleep(0.01)
    status, body = await chat(stage, "beta")
    assert status == 503, body
    assert body["error"]["code"] == "model_busy" and "'alpha'" in body["error"]["message"]
    stage.replicas["alpha"].hold.set()
    assert (await running)[0] == 200
    assert "load beta" not in stage.events


async def test_requests_for_a_loading_model_wait_for_the_one_load(stage_factory: Any) -> None:
    stage = await stage_factory(max_loaded=1)
    stage.gates["alpha"] = asyncio.Event()
    first = [asyncio.create_task(chat(stage, "alpha")) for _ in range(3)]
    while "load alpha" not in stage.events:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert not any(t.done() for t in first)
    assert await states(stage) == {"alpha": "loading", "beta": "unloaded", "gamma": "unloaded"}
    stage.gates["alpha"].set()
    for status, answer in await asyncio.gather(*first):
        assert status == 200 and said(answer) == "This is alpha speaking."
    assert stage.events == ["load alpha", "loaded alpha"]  # one load for the three


async def test_a_load_past_the_timeout_is_a_503_and_the_load_goes_on(stage_factory: Any) -> None:
    stage = await stage_factory(max_loaded=1, load_timeout=0.3)
    stage.gates["alpha"] = asyncio.Event()
    status, body = await chat(stage, "alpha")
    assert status == 503, body
    assert body["error"]["type"] == "server_error" and body["error"]["code"] == "model_loading"
    assert "'alpha' is still loading after 0.3 s" in body["error"]["message"]
    stage.gates["alpha"].set()  # the load was not given up: the next request finds the model loaded
    status, answer = await chat(stage, "alpha")
    assert status == 200 and said(answer) == "This is alpha speaking."
    assert stage.events == ["load alpha", "loaded alpha"]
    # the Anthropic API's 503 is its own shape
    stage.gates["beta"] = asyncio.Event()
    resp = await stage.http.post("/v1/messages", json={"model": "beta", "max_tokens": 20,
                                                       "messages": [{"role": "user", "content": "Hi"}]})
    body = await resp.json()
    assert resp.status == 503 and body["type"] == "error", body
    assert body["error"]["type"] == "overloaded_error" or body["error"]["type"] == "api_error", body
    assert "still loading" in body["error"]["message"]
    stage.gates["beta"].set()


async def test_a_failed_load_is_a_503_and_the_next_request_tries_again(stage_factory: Any) -> None:
    stage = await stage_factory(max_loaded=1)
    stage.failures["beta"] = 1
    status, body = await chat(stage, "beta")
    assert status == 503, body
    assert body["error"]["code"] == "model_load_failed"
    assert "could not be loaded: llama-server exited with code 1 while loading beta" in body["error"]["message"]
    views = {m["id"]: m for m in (await health(stage))["models"]}
    assert views["beta"]["state"] == "unloaded" and "exited with code 1" in views["beta"]["last_error"]
    status, answer = await chat(stage, "beta")
    assert status == 200 and said(answer) == "This is beta speaking."
    views = {m["id"]: m for m in (await health(stage))["models"]}
    assert views["beta"]["last_error"] is None and views["beta"]["loads"] == 1


async def test_an_unknown_model_is_a_404_naming_the_known_ids(stage_factory: Any) -> None:
    stage = await stage_factory(max_loaded=1)
    status, body = await chat(stage, "delta")
    assert status == 404
    assert body == {"error": {"message": "model 'delta' does not exist; this server serves 'alpha', 'beta', 'gamma'",
                              "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}
    resp = await stage.http.post("/v1/completions", json={"model": "delta", "prompt": "x"})
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "model_not_found"
    resp = await stage.http.post("/v1/responses", json={"model": "delta", "input": "x"})
    assert resp.status == 404 and (await resp.json())["error"]["param"] == "model"
    resp = await stage.http.post("/v1/messages", json={"model": "delta", "max_tokens": 20,
                                                       "messages": [{"role": "user", "content": "Hi"}]})
    body = await resp.json()
    assert resp.status == 404
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert "'alpha', 'beta', 'gamma'" in body["error"]["message"]
    resp = await stage.http.get("/v1/models/delta")
    assert resp.status == 404 and "'alpha', 'beta', 'gamma'" in (await resp.json())["error"]["message"]
    assert stage.events == []  # nothing was loaded for them


async def test_the_ui_inspector_and_status_see_the_models(stage_factory: Any) -> None:
    stage = await stage_factory(max_loaded=1)
    resp = await stage.http.post("/ui/api/chat", json={"messages": [{"role": "user", "content": "Hi"}]})
    body = await resp.json()
    assert resp.status == 200, body
    assert body["completion"]["choices"][0]["message"]["content"] == "This is alpha speaking."
    assert [e["raw"] for e in body["inspection"]["exchanges"]] == ["This is alpha speaking."]  # recorded
    resp = await stage.http.post("/ui/api/chat", json={"model": "beta", "messages": [{"role": "user",
                                                                                       "content": "Hi"}]})
    body = await resp.json()
    assert resp.status == 200 and body["completion"]["choices"][0]["message"]["content"] == "This is beta speaking."
    status = await (await stage.http.get("/ui/api/status")).json()
    assert status["models"] == IDS
    assert {m["id"]: m["state"] for m in status["served_models"]} == {
        "alpha": "unloaded", "beta": "loaded", "gamma": "unloaded"}


async def test_a_loaded_model_whose_server_failed_is_loaded_again(stage_factory: Any) -> None:
    stage = await stage_factory(max_loaded=2)
    assert (await chat(stage, "alpha"))[0] == 200
    process = stage.models.models["alpha"].process
    assert isinstance(process, StandInServer)
    process.state = "failed"  # its supervisor gave up restarting it
    status, answer = await chat(stage, "alpha")
    assert status == 200 and said(answer) == "This is alpha speaking."
    assert stage.events == ["load alpha", "loaded alpha", "unload alpha", "load alpha", "loaded alpha"]
    assert stage.models.models["alpha"].process is not process


async def test_metrics_have_a_series_per_loaded_model(stage_factory: Any) -> None:
    stage = await stage_factory(max_loaded=2)
    assert (await chat(stage, "alpha"))[0] == 200
    assert (await chat(stage, "gamma"))[0] == 200
    text = await (await stage.http.get("/metrics")).text()
    for model_id in ("alpha", "gamma"):
        assert f'oaiproxy_upstream_up{{role="chat",upstream="{stage.urls[model_id][-1]}"}} 1.0' in text
    assert 'model="beta"' in text  # its plan cache, though never loaded
    assert 'model="alpha"' in text and 'model="gamma"' in text


async def test_stopping_the_set_unloads_every_model(stage_factory: Any) -> None:
    stage = await stage_factory(max_loaded=3)
    for model_id in IDS:
        assert (await chat(stage, model_id))[0] == 200
    urls = [stage.urls[m][-1] for m in IDS]
    await stage.models.close()
    assert sorted(e for e in stage.events if e.startswith("unload")) == [f"unload {m}" for m in IDS]
    for url in urls:
        assert not await reachable(url)
