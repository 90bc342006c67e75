"""What guards the HTTP surface: API key, body limit, CORS, the per-request timeout, and /openapi.json."""

from __future__ import annotations

import json
import time

import jsonschema
import openai
import pytest
from openai import OpenAI

from tests._processes import ProxyProcess
from tests.api.conftest import API_KEY, MODEL, ORIGIN, http, sse_events
from tests.api.conftest import GUARDED_TIMEOUT as TIMEOUT

CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
LONG_RUN = {"prompt": "Count: 1, 2, 3,", "max_tokens": 3000, "temperature": 1.0, "seed": 3,
            "logit_bias": {"1": -100, "106": -100}}  # gemma's EOS and <end_of_turn> banned: it cannot stop early


def test_api_key_required_on_v1_only(guarded_proxy: ProxyProcess) -> None:
    for key in ("", "sk-wrong"):
        bad = OpenAI(base_url=guarded_proxy.base_url, api_key=key or "x", max_retries=0,
                     default_headers={} if key else {"Authorization": ""})
        with pytest.raises(openai.AuthenticationError) as err:
            bad.models.list()
        assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model=MODEL, **CHAT)
    status, _, _ = http("POST", guarded_proxy.base_url + "/completions", {"prompt": "x"},
                        headers={"Authorization": f"Basic {API_KEY}"})
    assert status == 401  # right key, wrong scheme
    good = OpenAI(base_url=guarded_proxy.base_url, api_key=API_KEY, max_retries=0)
    assert [m.id for m in good.models.list()] == [MODEL]
    assert good.completions.create(model=MODEL, prompt="Hi", max_tokens=1).usage.completion_tokens == 1
    for path in ("/health", "/openapi.json"):  # open without a key
        assert http("GET", guarded_proxy.url + path)[0] == 200
    log = guarded_proxy.log()
    assert "DEBUG" in log and API_KEY not in log  # debug logging on, and still no key in it


def test_body_limit_is_configurable(guarded_proxy: ProxyProcess, endpoint_proxy: ProxyProcess) -> None:
    client = OpenAI(base_url=guarded_proxy.base_url, api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model=MODEL, **CHAT, extra_body={"padding": "x" * 70_000})
    assert err.value.status_code == 413
    assert err.value.body["code"] == "request_too_large" and "65536" in err.value.message
    # just under the limit is fine (unknown fields are ignored)
    ok = client.chat.completions.create(model=MODEL, **CHAT, extra_body={"padding": "x" * 60_000})
    assert ok.choices
    # the default limit is 8 MiB
    status, _, raw = http("POST", endpoint_proxy.base_url + "/chat/completions",
                          b'{"padding": "' + b"x" * (8 * 1024 * 1024) + b'"}')
    assert status == 413 and json.loads(raw)["error"]["param"] == "body"


def test_request_timeout_on_the_real_model(guarded_proxy: ProxyProcess) -> None:
    """A plain request gets a 504; a stream gets an error event and [DONE]. Both run at once (two slots).
    That the upstream request is closed too is checked in test_timeout_closes_upstream.py."""
    from concurrent.futures import ThreadPoolExecutor

    def plain() -> tuple[int, float]:
        client = OpenAI(base_url=guarded_proxy.base_url, api_key=API_KEY, max_retries=0, timeout=60)
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as err:
            client.completions.create(model=MODEL, **LONG_RUN)
        assert err.value.code == "request_timeout" and "--request-timeout" in err.value.message
        return err.value.status_code, time.monotonic() - started

    def streamed() -> tuple[int, bytes, float]:
        started = time.monotonic()
        status, _, raw = http("POST", guarded_proxy.base_url + "/completions", {**LONG_RUN, "stream": True},
                              headers={"Authorization": f"Bearer {API_KEY}"})
        return status, raw, time.monotonic() - started

    with ThreadPoolExecutor(2) as pool:
        plain_result, stream_result = pool.submit(plain), pool.submit(streamed)
        status, elapsed = plain_result.result()
        s_status, raw, s_elapsed = stream_result.result()
    assert status == 504 and TIMEOUT <= elapsed < TIMEOUT + 10
    assert TIMEOUT <= s_elapsed < TIMEOUT + 10
    if s_status == 504:  # the deadline passed before the first token (a very busy machine)
        assert json.loads(raw)["error"]["code"] == "request_timeout"
    else:
        assert s_status == 200
        events = sse_events(raw)
        assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == "request_timeout"
        assert any(e.get("choices") for e in events[:-2])  # text streamed before the deadline


def test_cors_preflight_and_headers(embed_proxy: ProxyProcess, endpoint_proxy: ProxyProcess) -> None:
    pre = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}
    status, headers, _ = http("OPTIONS", embed_proxy.base_url + "/chat/completions", headers=pre)
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "authorization" in headers["Access-Control-Allow-Headers"].lower()
    status, headers, _ = http("OPTIONS", embed_proxy.base_url + "/chat/completions",
                              headers={**pre, "Origin": "http://evil.example"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    # actual responses carry the header too: JSON, errors, and streams
    status, headers, _ = http("GET", embed_proxy.base_url + "/models", headers={"Origin": ORIGIN})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ORIGIN and "Origin" in headers["Vary"]
    status, headers, _ = http("GET", embed_proxy.base_url + "/models/nope", headers={"Origin": ORIGIN})
    assert status == 404 and headers["Access-Control-Allow-Origin"] == ORIGIN
    status, headers, _ = http("POST", embed_proxy.base_url + "/completions",
                              {"prompt": "Hi", "max_tokens": 1, "stream": True}, headers={"Origin": ORIGIN})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ORIGIN
    status, headers, _ = http("GET", embed_proxy.base_url + "/models", headers={"Origin": "http://evil.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    # not configured: no CORS headers at all, and no preflight route
    status, headers, _ = http("GET", endpoint_proxy.base_url + "/models", headers={"Origin": ORIGIN})
    assert status == 200 and not any(h.lower().startswith("access-control") for h in headers)
    status, headers, _ = http("OPTIONS", endpoint_proxy.base_url + "/chat/completions", headers=pre)
    assert status == 405 and not any(h.lower().startswith("access-control") for h in headers)


def test_openapi_document_is_valid_and_matches_reality(endpoint_proxy: ProxyProcess, client: OpenAI) -> None:
    from openapi_spec_validator import validate

    status, _, raw = http("GET", endpoint_proxy.url + "/openapi.json")
    assert status == 200
    doc = json.loads(raw)
    validate(doc)
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/health", "/openapi.json", "/v1/models", "/v1/models/{model_id}",
                                 "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                                 "/v1/messages", "/v1/messages/count_tokens", "/v1/responses",
                                 "/v1/responses/{response_id}", "/v1/responses/{response_id}/input_items",
                                 "/v1/conversations", "/v1/conversations/{conversation_id}",
                                 "/v1/conversations/{conversation_id}/items",
                                 "/v1/conversations/{conversation_id}/items/{item_id}",
                                 "/v1/tools", "/", "/{thread}"}

    def check(instance: object, name: str) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
        jsonschema.Draft202012Validator(schema).validate(instance)

    # real responses validate against the documented schemas
    check(client.chat.completions.create(model=MODEL, **CHAT).model_dump(mode="json"), "ChatCompletion")
    check(client.completions.create(model=MODEL, prompt="Hi", max_tokens=2, logprobs=1).model_dump(mode="json"),
          "TextCompletion")
    check(client.models.list().model_dump(mode="json"), "ModelList")
    status, _, raw = http("POST", endpoint_proxy.base_url + "/embeddings", {"input": "x"})
    check(json.loads(raw), "ErrorResponse")
    check({"messages": [{"role": "user", "content": "x"}], "max_tokens": 3}, "ChatCompletionRequest")
    with pytest.raises(jsonschema.ValidationError):
        check({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "ChatCompletionRequest")

    # Anthropic's Messages: its own message and error shapes, under "Anthropic."
    hi = [{"role": "user", "content": "Hi"}]
    status, _, raw = http("POST", endpoint_proxy.base_url + "/messages",
                          {"model": MODEL, "max_tokens": 2, "messages": hi})
    assert status == 200
    check(json.loads(raw), "Anthropic.Message")
    status, _, raw = http("POST", endpoint_proxy.base_url + "/messages/count_tokens", {"model": MODEL, "messages": hi})
    assert status == 200
    check(json.loads(raw), "Anthropic.CountTokensResponse")
    status, _, raw = http("POST", endpoint_proxy.base_url + "/messages", {"model": MODEL, "messages": hi})
    assert status == 400  # max_tokens is required, as Anthropic's
    check(json.loads(raw), "Anthropic.ErrorResponse")
    with pytest.raises(jsonschema.ValidationError):
        check(json.loads(raw), "ErrorResponse")
    # OpenAI's Responses, stored and read back through every documented route
    status, _, raw = http("POST", endpoint_proxy.base_url + "/responses",
                          {"model": MODEL, "input": "Hi", "max_output_tokens": 16, "store": True})
    assert status == 200
    created = json.loads(raw)
    check(created, "Response")
    for path, component in (("", "Response"), ("/input_items", "InputItemList")):
        status, _, raw = http("GET", f"{endpoint_proxy.base_url}/responses/{created['id']}{path}")
        assert status == 200
        check(json.loads(raw), component)
    status, _, raw = http("DELETE", f"{endpoint_proxy.base_url}/responses/{created['id']}")
    assert status == 200
    check(json.loads(raw), "DeletedResponse")
    status, _, raw = http("GET", f"{endpoint_proxy.base_url}/responses/{created['id']}")
    assert status == 404
    check(json.loads(raw), "ErrorResponse")
    check({"model": MODEL, "input": [{"role": "user", "content": "x"}]}, "ResponsesRequest")
    # PikoBrain's threads at the root: each documented method answers as documented
    thread = f"{endpoint_proxy.url}/openapi-check"
    status, _, raw = http("PUT", thread, b"Hello there", {"Content-Type": "text/plain"})
    assert status == 200 and json.loads(raw)["object"] == "thread.messages.added", raw
    status, _, raw = http("GET", thread + "?order=desc&limit=1")
    assert status == 200 and [m["content"] for m in json.loads(raw)["data"]] == ["Hello there"], raw
    status, _, raw = http("DELETE", thread)
    assert status == 200 and json.loads(raw) == {"id": "openapi-check", "object": "thread.deleted", "deleted": True}
    status, _, raw = http("GET", thread)
    assert status == 404
    check(json.loads(raw), "ErrorResponse")
