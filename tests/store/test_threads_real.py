"""PikoBrain threads on two real proxy processes sharing one PostgreSQL database, in front of the session's
llama-server and default model: a thread begun on one is run on the other (its history reaches the model),
and runs sent to both at once each either answer or say ``thread_busy``, leaving whole turns in order; and a
proxy killed mid-run leaves its thread as it was."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests._processes import LlamaServer, ProxyProcess
from tests.api.conftest import http
from tests.store.postgres import PostgresServer

pytestmark = pytest.mark.integration
TEXT = {"Content-Type": "text/plain"}


def test_a_thread_is_shared_by_two_proxies_and_their_concurrent_runs_never_interleave(
        upstream: LlamaServer, postgres_server: PostgresServer) -> None:
    args = ["--endpoint", upstream.url, "--db-url", postgres_server.create_database(), "--default-max-tokens", "8"]
    one, two = ProxyProcess(args), ProxyProcess(args)
    try:
        status, _, raw = http("PUT", one.url + "/ann", b"My name is Zorbulon and I like green tea.", TEXT)
        assert status == 200, raw
        question = b"What is my name?"
        status, alone, raw = http("POST", two.url + "/", question, TEXT)  # the same question, no thread
        assert status == 200, raw
        status, headers, raw = http("POST", two.url + "/ann", question, TEXT, timeout=120)
        assert status == 200, raw
        assert headers["X-Run-Context"] == "2"
        answer = raw.decode()
        # the other proxy's message reached the model: the prompt is longer by it
        assert int(headers["X-Run-Input-Tokens"]) > int(alone["X-Run-Input-Tokens"]) + 5
        status, _, raw = http("GET", one.url + "/ann")
        page = json.loads(raw)
        assert [m["role"] for m in page["data"]] == ["user", "user", "assistant"]
        assert page["data"][2]["content"] == answer  # what the client got is what was kept
        assert page["data"][2]["usage"]["input_tokens"] == int(headers["X-Run-Input-Tokens"])

        def run(proxy: ProxyProcess, i: int) -> int:
            return http("POST", proxy.url + "/ann", f"Question {i}?".encode(), TEXT, timeout=120)[0]

        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda i: run((one, two)[i % 2], i), range(6)))
        assert set(statuses) <= {200, 409} and 200 in statuses, statuses
        data = json.loads(http("GET", two.url + "/ann?limit=100")[2])["data"]
        assert [m["position"] for m in data] == list(range(len(data)))
        assert len(data) == 3 + 2 * statuses.count(200)
        # every run kept its question and its answer together, none cut into another
        assert [m["role"] for m in data[3:]] == ["user", "assistant"] * statuses.count(200)
    finally:
        one.stop()
        two.stop()


def test_a_proxy_killed_mid_run_leaves_the_thread_as_it_was(upstream: LlamaServer, tmp_path: Path) -> None:
    """kill -9 while the run is in progress (0.4 s after it was sent; such a run takes about 1 s): after a
    restart on the same SQLite file the thread holds what it held before the run (the run's question is not
    kept either: it is committed with the answer), and takes new messages."""
    args = ["--endpoint", upstream.url, "--db-url", f"sqlite+aiosqlite:///{tmp_path / 'state.db'}",
            "--default-max-tokens", "3000"]
    proxy = ProxyProcess(args)
    try:
        assert http("PUT", proxy.url + "/count", b"Count with me.", TEXT)[0] == 200
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(http, "POST", proxy.url + "/count",
                                  b"Count from 1 to 2000: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", TEXT, 120)
            time.sleep(0.4)
            os.kill(proxy.pid, signal.SIGKILL)
            proxy.proc.wait(10)
            with pytest.raises(OSError):  # the client saw the connection die, not an answer
                running.result(30)
    finally:
        proxy.stop()
    again = ProxyProcess(args)
    try:
        data = json.loads(http("GET", again.url + "/count")[2])["data"]
        assert [(m["role"], m["content"]) for m in data] == [("user", "Count with me.")]
        status, _, raw = http("PUT", again.url + "/count", b"Still here?", TEXT)  # the thread is writable
        assert status == 200 and json.loads(raw)["first_position"] == 1
    finally:
        again.stop()
