"""PikoBrain threads on two real proxy processes sharing one PostgreSQL database, in front of the session's
llama-server and default model: a thread begun on one is run on the other (its history reaches the model),
and runs sent to both at once each either answer or say ``thread_busy``, leaving whole turns in order."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

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
