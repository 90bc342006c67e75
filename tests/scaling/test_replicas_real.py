"""Two spawned replicas of the default model (``--replicas 2``, one slot and one thread each): requests spread
over both, a replica killed with kill -9 mid-run loses no non-streamed request (and every stream ends with a
whole valid call or an error event), and affinity shows in the
prompt tokens llama-server reused from its cache (``usage.prompt_tokens_details.cached_tokens``, its
``timings.cache_n``), with and without it.

Run under ``flock /tmp/oaiproxy-model-tests.lock``: each proxy here loads the model twice."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests._processes import ProxyProcess, pid_alive

pytestmark = pytest.mark.integration

ARGS = ["--replicas", "2", "--parallel", "1", "--threads", "1", "--ctx-size", "2048", "--default-max-tokens", "40"]
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                         "parameters": {"type": "object", "additionalProperties": False,
                                                        "properties": {"city": {"type": "string", "maxLength": 24}},
                                                        "required": ["city"]}}}


def post(proxy: ProxyProcess, path: str, body: dict[str, Any], timeout: float = 120) -> tuple[int, Any]:
    req = urllib.request.Request(proxy.url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def health(proxy: ProxyProcess) -> Any:
    try:
        with urllib.request.urlopen(proxy.url + "/health", timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def tool_call(proxy: ProxyProcess, city: str) -> tuple[int, Any]:
    return post(proxy, "/v1/chat/completions", {
        "messages": [{"role": "user", "content": f"What is the weather in {city}?"}], "tools": [TOOL],
        "tool_choice": "required", "max_tokens": 128, "temperature": 0})


def assert_valid_call(status: int, body: Any) -> None:
    assert status == 200, body
    assert body["choices"][0]["finish_reason"] == "tool_calls", body["choices"]
    call = body["choices"][0]["message"]["tool_calls"][0]["function"]
    assert call["name"] == "get_weather" and isinstance(json.loads(call["arguments"])["city"], str)


@pytest.fixture(scope="module")
def replicas() -> Any:
    proxy = ProxyProcess(ARGS)
    yield proxy
    proxy.stop()


def test_requests_spread_over_both_replicas(replicas: ProxyProcess) -> None:
    before = {u["name"]: u["served"] for u in health(replicas)["upstreams"]}
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: tool_call(replicas, c), ["Paris", "Oslo", "Lima", "Rome"]))
    for status, body in results:
        assert_valid_call(status, body)
    h = health(replicas)
    assert [u["state"] for u in h["upstreams"]] == ["ready", "ready"]
    served = {u["name"]: u["served"] - before[u["name"]] for u in h["upstreams"]}
    assert all(n >= 1 for n in served.values()), served  # one slot each: four at once need both
    assert len({u["pid"] for u in h["upstreams"]}) == 2


def kill_replica_0_while_busy(proxy: ProxyProcess) -> int:
    """kill -9 replica-0's llama-server as soon as it runs a generation; its pid."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        up = health(proxy)["upstreams"][0]
        if up["in_flight"]:
            os.kill(up["pid"], signal.SIGKILL)
            return int(up["pid"])
        time.sleep(0.05)
    raise AssertionError("replica-0 never had a generation to lose")


def test_a_replica_killed_mid_run_loses_no_request(replicas: ProxyProcess) -> None:
    cities = ["Paris", "Oslo", "Lima", "Rome", "Kyiv", "Cairo", "Quito", "Hanoi"]
    with ThreadPoolExecutor(len(cities)) as pool:
        futures = [pool.submit(tool_call, replicas, c) for c in cities]
        victim = kill_replica_0_while_busy(replicas)
        results = [f.result(timeout=180) for f in futures]
    for status, body in results:
        assert_valid_call(status, body)
    assert not pid_alive(victim)
    h = health(replicas)
    killed = h["upstreams"][0]
    # the generation it was running when killed (and any sent to it before it was out) ran again on replica-1
    assert killed["failed_before_first_event"] >= 1, killed
    print(f"\nkilled replica-0 (pid {victim}) with {len(cities)} requests running: all 200 with a valid call, "
          f"{killed['failed_before_first_event']} run again on replica-1")
    # its supervisor starts it again; then it is back in rotation
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and health(replicas)["upstreams"][0]["state"] != "ready":
        time.sleep(0.3)
    h = health(replicas)
    assert h["upstreams"][0]["state"] == "ready" and h["upstreams"][0]["pid"] != victim
    assert h["upstreams"][0]["restarts_in_window"] >= 1


def streamed_tool_call(proxy: ProxyProcess, city: str) -> list[Any]:
    """The events of one streamed required call, up to ``[DONE]`` (which must come)."""
    body = {"messages": [{"role": "user", "content": f"What is the weather in {city}?"}], "tools": [TOOL],
            "tool_choice": "required", "max_tokens": 128, "temperature": 0, "stream": True}
    req = urllib.request.Request(proxy.url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    events: list[Any] = []
    with urllib.request.urlopen(req, timeout=180) as resp:
        assert resp.status == 200
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                return events
            events.append(json.loads(line[len("data: "):]))
    raise AssertionError(f"stream ended without [DONE] after {events!r}")


def stream_outcome(events: list[Any]) -> str:
    """``call``: a whole valid call and finish ``tool_calls``; ``error``: an error event and no call before it."""
    calls = [tc for e in events if "choices" in e for c in e["choices"] for tc in (c["delta"].get("tool_calls") or [])]
    if events and "error" in events[-1]:
        assert not calls, events  # a call is sent only once it is whole and valid: none before an error
        assert events[-1]["error"]["message"], events[-1]
        return "error"
    finishes = [c["finish_reason"] for e in events for c in e.get("choices", []) if c.get("finish_reason")]
    assert finishes == ["tool_calls"], events
    assert len(calls) == 1 and calls[0]["function"]["name"] == "get_weather", calls
    assert isinstance(json.loads(calls[0]["function"]["arguments"])["city"], str)
    return "call"


def test_streams_through_a_replica_kill_end_whole_or_with_an_error(replicas: ProxyProcess) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(u["state"] != "ready" for u in health(replicas)["upstreams"]):
        time.sleep(0.2)
    cities = ["Paris", "Oslo", "Lima", "Rome", "Kyiv", "Cairo"]
    with ThreadPoolExecutor(len(cities)) as pool:
        futures = [pool.submit(streamed_tool_call, replicas, c) for c in cities]
        victim = kill_replica_0_while_busy(replicas)
        outcomes = [stream_outcome(f.result(timeout=240)) for f in futures]
    assert not pid_alive(victim)
    # every stream ended cleanly: a whole valid call, or (sent its first chunk on the dead replica) an error event
    assert outcomes.count("call") >= 1, outcomes
    print(f"\nkilled replica-0 (pid {victim}) under {len(cities)} streams: {outcomes.count('call')} whole calls, "
          f"{outcomes.count('error')} error events")


def test_sighup_restarts_the_replicas_one_at_a_time(replicas: ProxyProcess) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(u["state"] != "ready" for u in health(replicas)["upstreams"]):
        time.sleep(0.2)
    pids = [u["pid"] for u in health(replicas)["upstreams"]]
    os.kill(replicas.pid, signal.SIGHUP)
    answers = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # requests all along: one replica is always in rotation
        answers.append(tool_call(replicas, "Paris"))
        ups = health(replicas)["upstreams"]
        if all(u["pid"] not in pids and u["state"] == "ready" for u in ups):
            break
    for status, body in answers:
        assert_valid_call(status, body)
    ups = health(replicas)["upstreams"]
    assert all(u["pid"] not in pids and u["state"] == "ready" for u in ups), (pids, ups)


#: two slots per replica: a replica keeps two conversations cached
AFFINITY_ARGS = ["--replicas", "2", "--parallel", "2", "--threads", "1", "--ctx-size", "4096"]


def conversation_turns(proxy: ProxyProcess) -> tuple[int, int]:
    """Three conversations, three turns each, interleaved; the prompt tokens of the later turns, and of them
    those llama-server reused from its cache."""
    history: list[list[dict[str, Any]]] = [[], [], []]
    prompt = cached = 0
    for turn in range(3):
        for n in range(3):
            history[n].append({"role": "user", "content": f"Conversation {n}, turn {turn}: "
                               + "please tell me one more fact about the sea. " * 12})
            status, body = post(proxy, "/v1/chat/completions", {"messages": history[n], "max_tokens": 12,
                                                                "temperature": 0})
            assert status == 200, body
            history[n].append({"role": "assistant", "content": body["choices"][0]["message"]["content"] or "Ok."})
            if turn:  # the first turn has nothing to reuse either way
                prompt += body["usage"]["prompt_tokens"]
                cached += body["usage"]["prompt_tokens_details"]["cached_tokens"]
    return prompt, cached


def test_affinity_reuses_the_kv_cache() -> None:
    results = []
    for flag in ("--affinity", "--no-affinity"):  # one proxy at a time: this machine has two cores
        proxy = ProxyProcess([*AFFINITY_ARGS, flag])
        try:
            results.append(conversation_turns(proxy))
        finally:
            proxy.stop()
    (prompt, cached), (prompt_off, cached_off) = results
    print(f"\naffinity on: {cached}/{prompt} prompt tokens of the later turns cached; off: {cached_off}/{prompt_off}")
    assert cached > 0.4 * prompt  # at most ~60%: each turn adds about as much as it reuses
    assert cached > cached_off * 1.5, results
