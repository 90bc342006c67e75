"""Fuzz the HTTP API from its own OpenAPI description (schemathesis), plus hand-made hostile bodies.

Every answer must be a success or an OpenAI error JSON below 500: no 5xx, no
hang, no crash. Generated requests ask for at most 8 tokens (the proxy's default is 8 too),
at most 2 choices and 2 prompts, so each one finishes quickly; everything
else — wrong types, odd values, unknown fields — is left as generated.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from oaiproxy.api.openapi import openapi_document
from tests._processes import ProxyProcess

pytestmark = pytest.mark.integration  # every test talks to a proxy that spawns the real llama-server

schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture(scope="module")
def fuzz_proxy(default_model_path):
    p = ProxyProcess(["--parallel", "2", "--ctx-size", "4096", "--default-max-tokens", "8",
                      "--request-timeout", "60"])
    yield p
    assert p.proc.poll() is None, "the proxy died during fuzzing:\n" + p.log()[-3000:]
    p.stop()


def check_error_shape(status: int, text: str, path: str = "/v1/chat/completions") -> None:
    """Below 500, and an error in the API's own shape: Anthropic's on /v1/messages, OpenAI's elsewhere."""
    assert status < 500, f"{status}: {text[:500]}"
    if status >= 400:
        body = json.loads(text)
        err = body["error"]
        if path.startswith("/v1/messages"):
            assert body["type"] == "error" and set(err) == {"type", "message"} and err["message"], body
        else:
            assert {"message", "type", "param", "code"} <= set(err) and err["message"], body


@schema.parametrize()
@pytest.mark.timeout(1200)  # one pytest test runs all of an operation's examples
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_fuzz(case, fuzz_proxy: ProxyProcess) -> None:
    # llama-server honours any max_tokens a request asks for; keep generated ones short so the
    # run is bounded (invalid values, which are what a fuzzer is for, are left as they are)
    if isinstance(case.body, dict):
        for key, most in (("max_tokens", 8), ("max_completion_tokens", 8), ("max_output_tokens", 16), ("n", 2)):
            if isinstance(case.body.get(key), int) and not isinstance(case.body[key], bool) and case.body[key] > most:
                case.body[key] = most
        if isinstance(case.body.get("prompt"), list) and len(case.body["prompt"]) > 2:
            case.body["prompt"] = case.body["prompt"][:2]
    response = case.call(base_url=fuzz_proxy.url, timeout=90)
    check_error_shape(response.status_code, response.text, case.path)


def raw_post(url: str, data: bytes, content_type: str = "application/json") -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=90) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,                       # nesting bomb
    b'{"messages": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    b"\xff\xfe not utf-8",
    b"null", b"42", b'"a string"', b"[]",
    b'{"messages": [{"role": "user", "content": "hi"}], '
    b'"tools": [{"type": "function", "function": {"name": "bad name!"}}]}',
    b'{"messages": [{"role": "user", "content": "hi"}], '
    b'"tool_choice": {"type": "function", "function": {"name": "nope"}}}',
    b'{"messages": [{"role": "user", "content": "hi"}], '
    b'"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", '
    b'"properties": {"a": {"$ref": "#/nowhere"}}}}}], "tool_choice": "required"}',
    b'{"messages": [{"role": "user", "content": "hi"}], '
    b'"response_format": {"type": "json_schema", '
    b'"json_schema": {"name": "x", "schema": {"type": "string", "pattern": "(a"}}}}',
    b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}',
    b'{"messages": [{"role": "tool", "content": "x"}]}',
    b'{"messages": [{"role": "user", "content": "hi"}], "n": 1000}',
    b'{"messages": [{"role": "user", "content": "hi"}], "logit_bias": {"abc": 1}}',
])
def test_hostile_bodies(fuzz_proxy: ProxyProcess, body: bytes) -> None:
    status, text = raw_post(fuzz_proxy.base_url + "/chat/completions", body)
    assert status == 400, text[:300]
    check_error_shape(status, text)


def test_prompt_over_context_is_400(fuzz_proxy: ProxyProcess) -> None:
    long = "word " * 20_000
    status, text = raw_post(fuzz_proxy.base_url + "/chat/completions",
                            json.dumps({"messages": [{"role": "user", "content": long}]}).encode())
    check_error_shape(status, text)
    assert status == 400
