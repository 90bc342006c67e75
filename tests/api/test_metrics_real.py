"""``/metrics`` and the JSON log on the real proxy process, the session's llama-server and the default model:
after a real tool call, the scrape shows it, and the log has the request's line under the id the client sent."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests._processes import LlamaServer, ProxyProcess
from tests.api.conftest import MODEL, http

pytestmark = pytest.mark.integration

KEY = "sk-metrics-real-8d2e"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                   "required": ["city"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
def metered(upstream: LlamaServer) -> Iterator[ProxyProcess]:
    p = ProxyProcess(["--endpoint", upstream.url, "--api-key", KEY, "--log-format", "json"])
    yield p
    p.stop()


def scrape(p: ProxyProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, headers, raw = http("GET", p.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(raw.decode()) for s in family.samples}


def test_a_real_tool_call_shows_on_metrics_and_in_the_json_log(metered: ProxyProcess) -> None:
    assert http("GET", metered.url + "/metrics")[0] == 401  # the key guards it
    client = OpenAI(base_url=metered.base_url, api_key=KEY, max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "What is the weather in Paris?"}], tools=[WEATHER],
        # the generic envelope's bounded thought comes first: 96 tokens is its call budget (GenericStyle.samples)
        tool_choice="required", max_tokens=96, temperature=0, extra_headers={"X-Request-Id": "real-call-1"})
    assert raw.headers["X-Request-Id"] == "real-call-1"
    answer = raw.parse()
    calls = answer.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"
    m = scrape(metered)
    dialect = json.loads(http("GET", metered.url + "/health")[2])["style"]
    assert m[("oaiproxy_requests_total", frozenset({"route": "/v1/chat/completions", "method": "POST",
                                                    "model": MODEL, "status": "200"}.items()))] == 1
    assert m[("oaiproxy_tool_calls_total", frozenset({"model": MODEL, "dialect": dialect,
                                                      "outcome": "returned"}.items()))] == len(calls)
    assert m[("oaiproxy_generations_total", frozenset({"model": MODEL, "dialect": dialect,
                                                       "grammar": "eager"}.items()))] == 1
    usage = answer.usage
    assert usage is not None
    assert m[("oaiproxy_prompt_tokens_total", frozenset({"model": MODEL}.items()))] == usage.prompt_tokens
    assert m[("oaiproxy_completion_tokens_total", frozenset({"model": MODEL}.items()))] == usage.completion_tokens
    ttft = m[("oaiproxy_time_to_first_token_seconds_sum", frozenset({"route": "/v1/chat/completions",
                                                                     "model": MODEL}.items()))]
    total = m[("oaiproxy_request_duration_seconds_sum", frozenset({"route": "/v1/chat/completions",
                                                                   "model": MODEL}.items()))]
    assert 0 < ttft <= total
    upstreams = [labels for (name, labels), v in m.items() if name == "oaiproxy_upstream_up" and v == 1]
    assert upstreams and dict(upstreams[0])["role"] == "chat"
    assert m[("oaiproxy_plan_cache_lookups_total", frozenset({"model": MODEL, "result": "miss"}.items()))] + m[
        ("oaiproxy_plan_cache_lookups_total", frozenset({"model": MODEL, "result": "bypass"}.items()))] == 1
    line: dict[str, object] = {}
    for _ in range(50):  # the line is written as the request ends; the log file may lag a little
        lines = [json.loads(x) for x in metered.log().splitlines() if x.startswith("{")]
        line = next((x for x in lines if x.get("request_id") == "real-call-1" and x["logger"] == "oaiproxy.request"),
                    {})
        if line:
            break
        time.sleep(0.1)
    assert line, metered.log()[-2000:]
    assert line["status"] == 200 and line["model"] == MODEL and line["dialect"] == dialect
    assert line["prompt_tokens"] == usage.prompt_tokens and line["completion_tokens"] == usage.completion_tokens
    assert line["tool_calls"] == len(calls) and line["outcome"] == "ok" and line["level"] == "info"
    # every line of the proxy's log is JSON, start-up included
    text = [x for x in metered.log().splitlines() if x.strip()]
    assert all(x.startswith("{") and json.loads(x).get("level") for x in text), text[:5]
