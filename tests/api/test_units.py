"""Unit tests of the API-surface building blocks, no server needed."""

from __future__ import annotations

import base64
import struct

import pytest

from oaiproxy.api.app import allowed_origin
from oaiproxy.api.completions.protocol import CompletionRequest
from oaiproxy.api.completions.serving import plan_jobs, split_prompts, to_logprobs
from oaiproxy.api.embeddings.protocol import EmbeddingRequest
from oaiproxy.api.embeddings.serving import decode_base64, encode_base64, split_inputs
from oaiproxy.api.protocol import parse_request
from oaiproxy.errors import BadRequest
from oaiproxy.settings import ConfigError, Settings, build_settings, load_config_file


def req(**kw) -> CompletionRequest:
    return parse_request(CompletionRequest, kw)


def test_prompt_shapes() -> None:
    assert split_prompts("a") == ["a"]
    assert split_prompts(["a", "b"]) == ["a", "b"]
    assert split_prompts([1, 2, 3]) == [[1, 2, 3]]
    assert split_prompts([[1, 2], "c"]) == [[1, 2], "c"]
    with pytest.raises(BadRequest) as err:
        split_prompts([])
    assert err.value.param == "prompt"
    with pytest.raises(BadRequest) as err:
        split_prompts(["a", []])
    assert err.value.param == "prompt[1]"
    for bad in ({"x": 1}, [1.5], [["a"]], [True, 2], None):
        with pytest.raises(BadRequest) as err:
            req(prompt=bad)
        assert err.value.param == "prompt"


def test_jobs_order_seed_and_limits() -> None:
    jobs = plan_jobs(req(prompt=["a", "b"], n=2, seed=10, max_tokens=3, echo=True, stop="\n"))
    assert [(j.index, j.prompt_index, j.echo) for j in jobs] == [(0, 0, "a"), (1, 0, "a"), (2, 1, "b"), (3, 1, "b")]
    assert [j.body["seed"] for j in jobs] == [10, 11, 10, 11]  # n samples differ, prompts repeat the series
    assert all(j.body["n_predict"] == 3 and j.body["stop"] == ["\n"] for j in jobs)
    assert plan_jobs(req(prompt="a"))[0].body["n_predict"] == 16  # OpenAI's default for this endpoint
    assert plan_jobs(req(prompt="a", logprobs=0))[0].body["n_probs"] == 1
    with pytest.raises(BadRequest) as err:
        plan_jobs(req(prompt=["a"] * 20, n=4))
    assert err.value.param == "n"
    with pytest.raises(BadRequest) as err:
        plan_jobs(req(prompt=[1, 2], echo=True))
    assert err.value.param == "echo"
    with pytest.raises(BadRequest) as err:
        plan_jobs(req(prompt="a", logit_bias={"x": 1}))
    assert err.value.param == "logit_bias"
    assert plan_jobs(req(prompt="a", suffix=""))  # an empty suffix asks for nothing
    with pytest.raises(BadRequest) as err:
        req(prompt="a", max_tokens=0)  # llama-server would still sample one token
    assert err.value.param == "max_tokens"


def test_legacy_logprobs_shape() -> None:
    items = [{"token": "He", "logprob": -0.5, "top_logprobs": [{"token": "He", "logprob": -0.5},
                                                                {"token": "She", "logprob": -1.5}]},
             {"token": "llo", "logprob": -0.1, "top_logprobs": []}]
    lp = to_logprobs(items, top=1, offset=4)
    assert lp.tokens == ["He", "llo"] and lp.token_logprobs == [-0.5, -0.1]
    assert lp.top_logprobs == [{"He": -0.5}, {}] and lp.text_offset == [4, 6]


def test_base64_is_little_endian_float32() -> None:
    vec = [0.5, -1.25, 3.0e-8, 1e30]
    text = encode_base64(vec)
    assert base64.b64decode(text) == struct.pack("<4f", *vec)
    assert decode_base64(text) == [struct.unpack("<f", struct.pack("<f", v))[0] for v in vec]


def test_embedding_inputs() -> None:
    assert split_inputs("a") == ["a"]
    assert split_inputs([5, 6]) == [[5, 6]]
    assert split_inputs(["a", [1]]) == ["a", [1]]
    for bad, param in (("", "input"), ([], "input"), (["a", ""], "input[1]"), ([[1], []], "input[1]"),
                       ([[1, -2]], "input[0]")):
        with pytest.raises(BadRequest) as err:
            split_inputs(bad)
        assert err.value.param == param, bad
    with pytest.raises(BadRequest) as err:
        parse_request(EmbeddingRequest, {"input": "x", "encoding_format": "int8"})
    assert err.value.param == "encoding_format"
    with pytest.raises(BadRequest) as err:
        parse_request(EmbeddingRequest, {"input": "x", "dimensions": 0})
    assert err.value.param == "dimensions"


def test_cors_origin_matching() -> None:
    assert allowed_origin([], "http://a") is None
    assert allowed_origin(["*"], "http://a") == "*"
    assert allowed_origin(["http://a"], "http://a") == "http://a"
    assert allowed_origin(["http://a"], "http://b") is None
    assert allowed_origin(["http://a"], None) is None


def test_new_settings(tmp_path) -> None:
    s = build_settings({"cors_origin": ["http://a.example, https://b.example/", "*"], "api_key": "sk-secret-123"})
    assert s.cors_origin == ["http://a.example", "https://b.example", "*"]
    assert "sk-secret-123" not in repr(s) and "sk-secret-123" not in str(s)
    assert Settings().request_timeout == 600 and Settings().max_body_bytes == 8 * 1024 * 1024
    assert Settings().cors_origin == [] and Settings().embedding_model is None
    for values, option in (({"cors_origin": ["ftp://x"]}, "--cors-origin"),
                           ({"request_timeout": 0}, "--request-timeout"),
                           ({"max_body_bytes": 10}, "--max-body-bytes"),
                           ({"embedding_pooling": "none"}, "--embedding-pooling"),
                           ({"embedding_endpoint": "localhost:1"}, "--embedding-endpoint"),
                           ({"embedding_model": "a.gguf", "embedding_endpoint": "http://x"}, "--embedding-endpoint")):
        with pytest.raises(ConfigError) as err:
            build_settings(values)
        assert option in str(err.value) and "Value error" not in str(err.value)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("cors-origin: [http://a.example]\nrequest-timeout: 30\nembedding-model: default\n")
    s = build_settings(load_config_file(cfg))
    assert s.cors_origin == ["http://a.example"] and s.request_timeout == 30 and s.embedding_model == "default"


async def test_one_failing_choice_cancels_the_others() -> None:
    """A refused prompt ends the request at once and frees the slots of its sibling choices."""
    import asyncio
    import time

    from oaiproxy.api.completions.serving import CompletionEngine

    class Upstream:
        cancelled = 0

        async def completion(self, body: dict) -> dict:
            if body["prompt"] == "too long":
                await asyncio.sleep(0.05)
                raise BadRequest("llama-server rejected the request: context exceeded", code="upstream_rejected")
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                Upstream.cancelled += 1
                raise
            return {}

    started = time.monotonic()
    with pytest.raises(BadRequest, match="context exceeded"):
        await CompletionEngine(Upstream(), "m").complete(req(prompt=["ok", "too long", "ok"]))  # type: ignore[arg-type]
    assert time.monotonic() - started < 5 and Upstream.cancelled == 2


def test_logged_command_line_hides_secrets() -> None:
    from oaiproxy.runtime.llama_server import redact_secrets

    cmd = ["llama-server", "--model", "m.gguf", "--api-key", "sk-1", "--hf-token=hf_2", "-hft", "hf_3", "--port", "1"]
    shown = " ".join(redact_secrets(cmd))
    assert "sk-1" not in shown and "hf_2" not in shown and "hf_3" not in shown
    assert shown == "llama-server --model m.gguf --api-key *** --hf-token=*** -hft *** --port 1"


def test_nullable_fields_mean_their_default() -> None:
    r = req(prompt="a", n=None, echo=None, stream=None, max_tokens=None)
    assert (r.n, r.echo, r.stream) == (1, False, False)
    assert plan_jobs(r)[0].body["n_predict"] == 16


async def test_overlong_embedding_input_is_a_400() -> None:
    from oaiproxy.api.embeddings.serving import EmbeddingEngine
    from oaiproxy.errors import UpstreamError

    class Upstream:
        async def embeddings(self, body: dict) -> dict:
            # what llama-server answers (HTTP 500) for an input longer than its batch
            raise UpstreamError("llama-server /v1/embeddings answered HTTP 500: input (702 tokens) is too large to "
                                "process. increase the physical batch size (current batch size: 512)")

    with pytest.raises(BadRequest) as err:
        await EmbeddingEngine(Upstream(), "m").embed(EmbeddingRequest(input="word " * 700))  # type: ignore[arg-type]
    assert err.value.param == "input" and err.value.code == "input_too_long" and "702 tokens" in err.value.message
