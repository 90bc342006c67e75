"""OpenAI chat request fields oaiproxy cannot honour get a 400 naming them; the bookkeeping ones (``user``,
``metadata``, ``store``...) are accepted and logged; the sampling ones llama-server can do are honoured.
Before, ``modalities``, ``audio``, ``prediction``, ``service_tier``, ``top_logprobs`` without ``logprobs``,
``reasoning_effort``, ``web_search_options``... were accepted and silently ignored."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from oaiproxy.api.chat.protocol import ChatCompletionRequest
from oaiproxy.api.openapi import openapi_document
from oaiproxy.api.protocol import parse_request
from oaiproxy.errors import BadRequest
from tests._processes import ProxyProcess
from tests.api.conftest import MODEL

MESSAGES = [{"role": "user", "content": "Count: one, two,"}]

#: (field, a value OpenAI accepts that oaiproxy cannot honour)
REFUSED = [
    ("audio", {"voice": "alloy", "format": "wav"}),
    ("modalities", ["text", "audio"]),
    ("prediction", {"type": "content", "content": "one, two, three"}),
    ("service_tier", "flex"),
    ("service_tier", "priority"),
    ("verbosity", "low"),
    ("web_search_options", {}),
    ("moderation", {"model": "omni-moderation-latest"}),
    ("prompt_cache_retention", "24h"),
    ("prompt_cache_options", {"mode": "explicit"}),
    ("top_logprobs", 2),  # without logprobs: true
]

#: fields and values that are accepted: bookkeeping, or asking for what happens anyway
ACCEPTED = {
    "user": "user-1234", "safety_identifier": "a1b2c3", "prompt_cache_key": "conversation-9",
    "metadata": {"team": "search", "run": "7"}, "store": True,
    "modalities": ["text"], "service_tier": "auto", "reasoning_effort": "none",
    "prompt_cache_retention": "in_memory", "audio": None, "prediction": None, "web_search_options": None,
}


def req(**kw) -> ChatCompletionRequest:
    return parse_request(ChatCompletionRequest, {"messages": MESSAGES, **kw})


@pytest.mark.parametrize("field, value", REFUSED)
def test_refused_field_is_a_400_naming_it(field: str, value) -> None:
    with pytest.raises(BadRequest) as err:
        req(**{field: value}).check_supported()
    assert err.value.param == field and err.value.status == 400 and field in err.value.message


def test_accepted_fields_pass_and_are_reported_for_the_log() -> None:
    r = req(**ACCEPTED)
    r.check_supported()
    assert r.bookkeeping() == {k: ACCEPTED[k] for k in ("user", "safety_identifier", "prompt_cache_key",
                                                          "metadata", "store")}
    req(logprobs=True, top_logprobs=3).check_supported()
    req(frobnicate=True, reasoning={"effort": "high"}).check_supported()  # not OpenAI chat fields: ignored
    with pytest.raises(BadRequest) as err:
        req(metadata={str(i): "x" for i in range(17)}).check_supported()
    assert err.value.param == "metadata"
    with pytest.raises(BadRequest) as err:
        req(metadata={"a": 1})
    assert err.value.param == "metadata.a"


def test_openapi_lists_the_fields_and_says_what_happens() -> None:
    props = openapi_document()["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    for field, _ in REFUSED:
        assert field in props and props[field].get("description"), field
    for field in ("user", "metadata", "store"):
        assert props[field].get("description"), field


@pytest.mark.integration
def test_real_proxy_refuses_each_by_name(client: OpenAI) -> None:
    for field, value in REFUSED:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2, **{field: value})
        assert err.value.param == field and err.value.code in ("unsupported_parameter", "invalid_value"), field
        with pytest.raises(openai.BadRequestError) as err:  # streamed too: a plain 400, before any event
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2, stream=True,
                                           **{field: value})
        assert err.value.param == field


@pytest.mark.integration
def test_real_proxy_accepts_and_logs_bookkeeping(upstream) -> None:
    p = ProxyProcess(["--endpoint", upstream.url, "--log-level", "debug"])
    try:
        client = OpenAI(base_url=p.base_url, api_key="unused", max_retries=0, timeout=120)
        res = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2, temperature=0,
                                             **ACCEPTED)
        assert res.choices[0].finish_reason in ("stop", "length")
        log = p.log()
        assert "user='user-1234'" in log and "metadata={'team': 'search', 'run': '7'}" in log and "store=True" in log
    finally:
        p.stop()


@pytest.mark.integration
def test_real_proxy_honours_what_llama_server_can_do(client: OpenAI) -> None:
    no_end = {"1": -100, "106": -100}  # Gemma's <eos> and <end_of_turn> banned: the limit ends the answer
    capped = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=3,
                                            max_tokens=50, logit_bias=no_end, temperature=0)
    assert capped.usage.completion_tokens == 3 and capped.choices[0].finish_reason == "length"
    args = dict(model=MODEL, messages=MESSAGES, max_tokens=6, temperature=1.0, seed=1234, logit_bias=no_end)
    assert (client.chat.completions.create(**args).choices[0].message.content
            == client.chat.completions.create(**args).choices[0].message.content)
    probs = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3, temperature=0,
                                           logit_bias=no_end, logprobs=True, top_logprobs=2)
    content = probs.choices[0].logprobs.content
    assert len(content) == 3 and all(len(t.top_logprobs) == 2 for t in content)
