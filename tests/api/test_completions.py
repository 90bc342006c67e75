"""Legacy text completions (``/v1/completions``) through the openai SDK, plain and streamed."""

from __future__ import annotations

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests._processes import ProxyProcess
from tests.api.conftest import MODEL, http, sse_events

PROMPT = "The capital of France is"


def test_completion_text_usage_and_length_finish(client: OpenAI) -> None:
    res = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=5, temperature=0)
    assert res.object == "text_completion" and res.id.startswith("cmpl-") and res.model == MODEL
    [choice] = res.choices
    assert choice.index == 0 and choice.text and choice.finish_reason == "length"
    assert res.usage.completion_tokens == 5
    assert res.usage.prompt_tokens >= 5 and res.usage.total_tokens == res.usage.prompt_tokens + 5


def test_default_max_tokens_is_openais_16(client: OpenAI) -> None:
    res = client.completions.create(model=MODEL, prompt="Once upon a time", temperature=0,
                                    stop=None, seed=1, logit_bias={"1": -100})  # no EOS: runs to the limit
    assert res.usage.completion_tokens == 16 and res.choices[0].finish_reason == "length"


def test_prompt_list_n_echo_stop_and_logprobs(client: OpenAI) -> None:
    res = client.completions.create(model=MODEL, prompt=["1, 2, 3,", "a, b, c,"], n=2, max_tokens=3,
                                    temperature=0.8, seed=7, echo=True, stop=["\n"])
    assert [c.index for c in res.choices] == [0, 1, 2, 3]
    assert all(c.text.startswith("1, 2, 3,") for c in res.choices[:2])
    assert all(c.text.startswith("a, b, c,") for c in res.choices[2:])
    assert all("\n" not in c.text for c in res.choices)
    lp = client.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=4, temperature=0, logprobs=2)
    logprobs = lp.choices[0].logprobs
    assert "".join(logprobs.tokens) == lp.choices[0].text
    assert len(logprobs.token_logprobs) == len(logprobs.tokens) == len(logprobs.text_offset) == 4
    assert all(x <= 0 for x in logprobs.token_logprobs)
    assert all(1 <= len(top) <= 2 for top in logprobs.top_logprobs)
    # greedy: the chosen token is the most likely one
    assert all(max(top.values()) == pytest.approx(chosen) for top, chosen
               in zip(logprobs.top_logprobs, logprobs.token_logprobs, strict=True))
    assert logprobs.text_offset[0] == 0 and logprobs.text_offset[1] == len(logprobs.tokens[0])


def test_token_id_prompt_equals_text_prompt(client: OpenAI, upstream) -> None:
    tokens = upstream.post("/tokenize", {"content": PROMPT, "add_special": True})["tokens"]
    by_text = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, temperature=0)
    by_ids = client.completions.create(model=MODEL, prompt=tokens, max_tokens=4, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert by_ids.usage.prompt_tokens == len(tokens)


def test_stream_reassembles_with_usage(client: OpenAI) -> None:
    args = dict(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0)
    whole = client.completions.create(**args)
    chunks = list(client.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


async def test_async_stream_several_choices(aclient: AsyncOpenAI) -> None:
    stream = await aclient.completions.create(model=MODEL, prompt=["Red, green,", "One, two,"], max_tokens=4,
                                              temperature=0, echo=True, stream=True)
    texts: dict[int, str] = {}
    finished = []
    async for chunk in stream:
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
            if c.finish_reason:
                finished.append(c.index)
    assert sorted(finished) == [0, 1]
    whole = await aclient.completions.create(model=MODEL, prompt=["Red, green,", "One, two,"], max_tokens=4,
                                             temperature=0, echo=True)
    assert [texts[0], texts[1]] == [c.text for c in whole.choices]
    assert texts[0].startswith("Red, green,") and texts[1].startswith("One, two,")


def test_unsupported_and_invalid_fields_are_400s(client: OpenAI) -> None:
    cases = [
        (dict(prompt="def f(", suffix="\n    return x"), "suffix"),
        (dict(prompt="x", best_of=3), "best_of"),
        (dict(prompt="x", echo=True, logprobs=1), "logprobs"),
        (dict(prompt=[]), "prompt"),
        (dict(prompt=["ok", 5]), "prompt"),
        (dict(prompt="x", max_tokens="many"), "max_tokens"),
        (dict(prompt="x", logprobs=50), "logprobs"),
        (dict(prompt="x", temperature=3), "temperature"),
        (dict(prompt=[10**9]), "prompt"),  # refused by llama-server: not a token id of this model
    ]
    for kwargs, param in cases:
        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(model=MODEL, max_tokens=kwargs.pop("max_tokens", 2), **kwargs)
        assert err.value.param == param, (kwargs, err.value.message)


def test_missing_prompt_and_unknown_fields(endpoint_proxy: ProxyProcess) -> None:
    status, _, body = http("POST", endpoint_proxy.base_url + "/completions", {"max_tokens": 2})
    assert status == 400 and b'"param": "prompt"' in body
    status, _, body = http("POST", endpoint_proxy.base_url + "/completions",
                           {"prompt": "Hi", "max_tokens": 2, "temperature": 0, "frobnicate": True})
    assert status == 200, body


def test_raw_stream_ends_with_done(endpoint_proxy: ProxyProcess) -> None:
    status, headers, raw = http("POST", endpoint_proxy.base_url + "/completions",
                                {"prompt": PROMPT, "max_tokens": 3, "temperature": 0, "stream": True})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert events[-1] == "[DONE]" and all(isinstance(e, dict) for e in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "length"
