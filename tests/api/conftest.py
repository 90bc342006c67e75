"""Fixtures for the API-surface tests: OpenAI SDK clients on the session proxy, and extra proxies
with special options, all sharing the session's llama-server through ``--endpoint``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from openai import AsyncOpenAI, OpenAI

from tests._processes import LlamaServer as Upstream
from tests._processes import ProxyProcess

MODEL = "gemma-3-270m-q4_k_m"
API_KEY = "sk-test-7f3c9e1d2b4a"  # distinctive, so a leak into a log is unmistakable
ORIGIN = "http://app.example"
GUARDED_TIMEOUT = 6  # seconds: short for the timeout test, long enough for a 1-token request on a busy machine


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    """A raw request (for what the SDK hides: headers, preflights, raw bodies); never raises on a status."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def sse_events(raw: bytes) -> list[Any]:
    """The ``data:`` payloads of an SSE body, ``"[DONE]"`` kept as a string."""
    out = []
    for line in raw.decode().splitlines():
        if line.startswith("data: "):
            payload = line[6:]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


@pytest.fixture(scope="session")
def client(endpoint_proxy: ProxyProcess) -> OpenAI:
    return OpenAI(base_url=endpoint_proxy.base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture
def aclient(endpoint_proxy: ProxyProcess) -> AsyncOpenAI:
    # function-scoped: an async client belongs to one event loop
    return AsyncOpenAI(base_url=endpoint_proxy.base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def embed_proxy(upstream: Upstream):
    """Chat from the session's llama-server, embeddings from a spawned one on the default model, CORS on."""
    p = ProxyProcess(["--endpoint", upstream.url, "--embedding-model", "default", "--parallel", "1",
                      "--ctx-size", "1024", "--cors-origin", ORIGIN])
    yield p
    p.stop()


@pytest.fixture(scope="session")
def guarded_proxy(upstream: Upstream):
    """An API key, a small body limit and a short request timeout, with the full debug log on."""
    p = ProxyProcess(["--endpoint", upstream.url, "--api-key", API_KEY, "--max-body-bytes", "65536",
                      "--request-timeout", str(GUARDED_TIMEOUT), "--log-level", "debug"])
    yield p
    p.stop()
