"""Embeddings through a second, supervised llama-server on the default model (Gemma 3 270M, 640 dimensions)."""

from __future__ import annotations

import base64
import math
import os
import signal
import struct
import time
from pathlib import Path

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests._processes import ProxyProcess, pid_alive
from tests.api.conftest import API_KEY, MODEL, http

DIM = 640  # gemma-3-270m's hidden size


@pytest.fixture(scope="module")
def eclient(embed_proxy: ProxyProcess) -> OpenAI:
    return OpenAI(base_url=embed_proxy.base_url, api_key="unused", max_retries=0, timeout=60)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_float_embeddings_are_real_vectors(eclient: OpenAI) -> None:
    res = eclient.embeddings.create(model=MODEL, input=["The cat sat on the mat.", "Quarterly tax filing deadline",
                                                        "The cat sat on the mat."])
    assert res.object == "list" and res.model == MODEL and [d.index for d in res.data] == [0, 1, 2]
    a, b, a2 = (d.embedding for d in res.data)
    assert len(a) == len(b) == DIM
    assert a == a2  # same text, same vector
    assert _cosine(a, b) < 0.999 and a != b  # different texts, different vectors
    assert math.sqrt(sum(x * x for x in a)) == pytest.approx(1.0, abs=1e-3)  # llama-server L2-normalises
    assert res.usage.prompt_tokens > 6 and res.usage.total_tokens == res.usage.prompt_tokens


def test_base64_decodes_to_the_same_floats(eclient: OpenAI) -> None:
    text = "Embeddings in base64 are little-endian float32."
    floats = eclient.embeddings.create(model=MODEL, input=text, encoding_format="float").data[0].embedding
    assert len(floats) == DIM
    # Without encoding_format the SDK asks for base64 and decodes it itself (numpy or array, little-endian float32)
    via_sdk = eclient.embeddings.create(model=MODEL, input=text).data[0].embedding
    assert [float(x) for x in via_sdk] == floats
    explicit = eclient.embeddings.create(model=MODEL, input=text, encoding_format="base64").data[0].embedding
    assert isinstance(explicit, str)
    blob = base64.b64decode(explicit)
    assert len(blob) == 4 * DIM
    assert list(struct.unpack(f"<{DIM}f", blob)) == floats


async def test_async_and_token_inputs(embed_proxy: ProxyProcess, upstream) -> None:
    client = AsyncOpenAI(base_url=embed_proxy.base_url, api_key="unused", max_retries=0)
    tokens = upstream.post("/tokenize", {"content": "hello world", "add_special": True})["tokens"]
    by_text = await client.embeddings.create(model=MODEL, input="hello world")
    by_ids = await client.embeddings.create(model=MODEL, input=tokens)
    by_id_lists = await client.embeddings.create(model=MODEL, input=[tokens, tokens[:-1]])
    assert by_ids.data[0].embedding == pytest.approx(by_text.data[0].embedding, abs=1e-5)
    assert by_id_lists.data[0].embedding == pytest.approx(by_text.data[0].embedding, abs=1e-5)
    assert by_id_lists.data[1].embedding != by_id_lists.data[0].embedding
    await client.close()


def test_embedding_errors(eclient: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        eclient.embeddings.create(model=MODEL, input="x", dimensions=256)
    assert err.value.param == "dimensions" and "640" in err.value.message
    assert len(eclient.embeddings.create(model=MODEL, input="x", dimensions=DIM).data[0].embedding) == DIM
    for bad, param in [([], "input"), ([""], "input[0]"), (["ok", 3.5], "input"), ([[1, 2], [-4]], "input[1]")]:
        with pytest.raises(openai.BadRequestError) as err:
            eclient.embeddings.create(model=MODEL, input=bad)  # type: ignore[arg-type]
        assert err.value.param == param, bad
    with pytest.raises(openai.BadRequestError) as err:
        eclient.embeddings.create(model=MODEL, input="x", encoding_format="int8")  # type: ignore[arg-type]
    assert err.value.param == "encoding_format"
    with pytest.raises(openai.BadRequestError) as err:
        eclient.embeddings.create(model=MODEL, input=[[10**9]])
    assert err.value.param == "input" and "invalid tokens" in err.value.message
    with pytest.raises(openai.NotFoundError):
        eclient.embeddings.create(model="text-embedding-3-small", input="x")


def test_not_configured_is_a_clear_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=MODEL, input="x")
    assert err.value.code == "embeddings_not_configured" and "--embedding-model" in err.value.message


def test_health_and_models_show_the_embedding_server(embed_proxy: ProxyProcess, eclient: OpenAI) -> None:
    import json

    status, _, raw = http("GET", embed_proxy.url + "/health")
    emb = json.loads(raw)["embeddings"]
    assert status == 200 and emb["managed"] is True and emb["state"] == "ready" and emb["model"] == MODEL
    assert [m.id for m in eclient.models.list()] == [MODEL]  # same model: listed once


def test_embedding_server_never_outlives_the_proxy(upstream) -> None:
    """SIGTERM stops it; a SIGKILLed proxy takes it along too (parent-death signal). Also: the API key is
    in no log line (debug level included) and on no child's command line."""
    args = ["--endpoint", upstream.url, "--embedding-model", "default", "--parallel", "1", "--ctx-size", "512",
            "--api-key", API_KEY, "--log-level", "debug"]
    proxies = {sig: ProxyProcess(args, wait=False) for sig in (signal.SIGTERM, signal.SIGKILL)}  # start both at once
    try:
        for sig, p in proxies.items():
            p.wait_healthy(180)  # the old default
            children = p.children()
            assert len(children) == 1, children  # only the embedding server: chat uses --endpoint
            child = children[0]
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            assert b"--embeddings" in cmdline and API_KEY.encode() not in b" ".join(cmdline)
            os.kill(p.proc.pid, sig)
            p.proc.wait(30)
            deadline = time.monotonic() + 15
            while pid_alive(child) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not pid_alive(child), f"the embedding llama-server outlived a proxy stopped by {sig.name}"
            if sig == signal.SIGTERM:
                assert p.proc.returncode == 0
    finally:
        for p in proxies.values():
            p.stop()
    for p in proxies.values():
        assert "starting llama-server" in p.log() and API_KEY not in p.log()


def test_bad_embedding_options_fail_clearly(upstream, tmp_path) -> None:
    import subprocess
    import sys

    not_gguf = tmp_path / "e.gguf"
    not_gguf.write_text("nope")
    for args, message in (
        (["--embedding-model", str(tmp_path / "missing.gguf")], "--embedding-model: "),
        (["--embedding-model", str(not_gguf)], "not a GGUF file"),
        (["--embedding-endpoint", "http://127.0.0.1:9"], "--embedding-endpoint: no healthy llama-server"),
        (["--embedding-model", "default", "--embedding-endpoint", "http://x"], "exclude each other"),
    ):
        result = subprocess.run([sys.executable, "-m", "oaiproxy", "--endpoint", upstream.url, "--port", "0", *args],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
