"""Big requests on the real server, streamed and not: sixty real tool schemas at once (named and
``required`` tool choice), and a 30k-token prompt on a context that holds it. Also the upstream reader
against a stand-in llama-server whose final ``/completion`` event is a very long line (llama-server's
final event repeats the whole prompt)."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest
from aiohttp import web
from openai import OpenAI

from oaiproxy.runtime.upstream import LlamaServerClient
from tests._processes import ProxyProcess
from tests.api.big_tools import SCHEMAS, TOOLS
from tests.api.conftest import http

#: one slot holding the model's whole trained context (32768) and a bit: the 30k prompt fits
BIG_CTX = 34000


# ---------------------------------------------------------------- stand-in upstream


def _final_event_server(prompt_bytes: int) -> web.Application:
    """``/completion`` streaming two tokens, then a final event repeating a prompt of ``prompt_bytes``."""

    async def completion(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in ("Hel", "lo"):
            await response.write(b"data: " + json.dumps({"content": piece, "stop": False}).encode() + b"\n\n")
        final = {"content": "", "stop": True, "stop_type": "limit", "tokens_predicted": 2,
                 "tokens_evaluated": prompt_bytes // 4,
                 "prompt": ("lorem ipsum \"dolor\"\n" * prompt_bytes)[:prompt_bytes]}
        data = b"data: " + json.dumps(final).encode() + b"\n\n"
        for at in range(0, len(data), 65536):  # in pieces, as a socket delivers it
            await response.write(data[at:at + 65536])
            await asyncio.sleep(0)
        return response

    app = web.Application()
    app.router.add_post("/completion", completion)
    return app


@pytest.mark.parametrize("size", [200_000, 400_000])
async def test_stand_in_long_final_event_line(aiohttp_server, size: int) -> None:
    server = await aiohttp_server(_final_event_server(size))
    client = LlamaServerClient(str(server.make_url("")))
    try:
        whole = await client.completion({"prompt": "x", "n_predict": 2})
        assert whole["content"] == "Hello" and whole["stop_type"] == "limit" and len(whole["prompt"]) == size
        events = [ev async for ev in client.completion_stream({"prompt": "x", "n_predict": 2})]
        assert [ev["content"] for ev in events] == ["Hel", "lo", ""] and len(events[-1]["prompt"]) == size
    finally:
        await client.close()


async def test_stand_in_final_event_longer_than_512_kib(aiohttp_server) -> None:
    """Past aiohttp's readline cap (512 KiB, LineTooLong): a ~130k-token prompt, as on a 128k-context model."""
    server = await aiohttp_server(_final_event_server(2_000_000))
    client = LlamaServerClient(str(server.make_url("")))
    try:
        whole = await client.completion({"prompt": "x", "n_predict": 2})
        assert whole["content"] == "Hello" and len(whole["prompt"]) == 2_000_000
    finally:
        await client.close()


# ---------------------------------------------------------------- the real server


@pytest.fixture(scope="module")
def big_proxy(default_model_path):
    """A proxy spawning its own llama-server with one slot of BIG_CTX tokens."""
    p = ProxyProcess(["--parallel", "1", "--ctx-size", str(BIG_CTX), "--request-timeout", "900"])
    yield p
    p.stop()


@pytest.fixture(scope="module")
def big_client(big_proxy: ProxyProcess) -> OpenAI:
    return OpenAI(base_url=big_proxy.base_url, api_key="unused", max_retries=0, timeout=900)


def _streamed_calls(stream) -> tuple[list[tuple[str, str]], str | None]:
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for tc in chunk.choices[0].delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"name": "", "arguments": ""})
            slot["name"] += tc.function.name or ""
            slot["arguments"] += tc.function.arguments or ""
    return [(c["name"], c["arguments"]) for _, c in sorted(calls.items())], finish


def _assert_valid(calls: list[tuple[str, str]], allowed: set[str]) -> None:
    assert calls, "no tool call"
    for name, arguments in calls:
        assert name in allowed
        jsonschema.validate(json.loads(arguments), SCHEMAS[name])


@pytest.mark.integration
@pytest.mark.timeout(900)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_sixty_tools_named_and_required(big_client: OpenAI, stream: bool) -> None:
    ask = [{"role": "user", "content": "Book a table for 4 at restaurant R-17 tomorrow at 8 pm, then tell me "
                                       "the weather in Lyon."}]
    # room for long string arguments (some tools take up to 200-character notes): a call cut by the
    # limit would be dropped, which is right but not what this test is about
    common = dict(model=big_client.models.list().data[0].id, messages=ask, tools=TOOLS, temperature=0.7, seed=8,
                  max_tokens=600)
    for choice, allowed in (({"type": "function", "function": {"name": "book_restaurant"}}, {"book_restaurant"}),
                            ("required", set(SCHEMAS))):
        if stream:
            calls, finish = _streamed_calls(big_client.chat.completions.create(**common, tool_choice=choice,
                                                                              stream=True))
        else:
            res = big_client.chat.completions.create(**common, tool_choice=choice)
            if choice == "required":  # (a named choice shows the model only the named tool)
                assert res.usage.prompt_tokens > 4096, "all sixty tools are in the prompt"
            finish = res.choices[0].finish_reason
            calls = [(c.function.name, c.function.arguments) for c in res.choices[0].message.tool_calls or []]
        assert finish == "tool_calls", (choice, finish)
        _assert_valid(calls, allowed)


def _long_prompt(target_tokens: int) -> str:
    """Varied English prose (not one repeated line, which tokenizes unrealistically well), ~target_tokens."""
    subjects = ["The harbour master", "A tired engineer", "The old librarian", "Our neighbour", "The committee",
                "A young botanist", "The night train", "The city council", "A travelling cook", "The orchestra"]
    verbs = ["described", "questioned", "repaired", "measured", "forgot", "celebrated", "painted", "studied",
             "rebuilt", "announced"]
    objects = ["the northern bridge", "a list of forty recipes", "the broken clock tower", "every lighthouse",
               "the flooded meadow", "three rival theories", "the winter schedule", "a box of letters",
               "the museum's new wing", "the price of copper"]
    tails = ["before the storm arrived.", "while the market was closing.", "for the third year in a row.",
             "without telling anyone why.", "to everyone's surprise.", "in the quiet hours after midnight.",
             "as the committee had demanded.", "with borrowed tools and patience."]
    sentences = []
    k = 0
    # ~11 tokens a sentence with this tokenizer: enough sentences, then trimmed by measurement in the test
    while len(sentences) < target_tokens // 9:
        sentences.append(f"{subjects[k % 10]} {verbs[(k // 10) % 10]} {objects[(k // 100) % 10]} "
                         f"{tails[(k * 7) % 8]} (note {k})")
        k += 1
    return " ".join(sentences)


@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_thirty_thousand_token_prompt(big_proxy: ProxyProcess, big_client: OpenAI, upstream) -> None:
    text = _long_prompt(30_000)
    # trim to ~29.5k tokens of text (the session's llama-server has the same model and tokenizer)
    tokens = upstream.post("/tokenize", {"content": text})["tokens"]
    if len(tokens) > 29_500:
        text = upstream.post("/detokenize", {"tokens": tokens[:29_500]})["content"]
    question = "\n\nIn one word, what is this text about?"
    messages = [{"role": "user", "content": text + question}]
    model = big_client.models.list().data[0].id
    res = big_client.chat.completions.create(model=model, messages=messages, max_tokens=3, temperature=0)
    assert res.usage.prompt_tokens >= 29_500 and res.choices[0].finish_reason in ("stop", "length")
    assert 0 < res.usage.completion_tokens <= 3
    chunks = list(big_client.chat.completions.create(model=model, messages=messages, max_tokens=3, temperature=0,
                                                     stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.prompt_tokens == res.usage.prompt_tokens
    text_out = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text_out == (res.choices[0].message.content or "")
    # what the proxy read: llama-server's final event repeats the whole prompt in one line
    health = json.loads(http("GET", big_proxy.url + "/health")[2])
    status, _, raw = http("POST", health["upstream"]["url"] + "/completion",
                          {"prompt": text + question, "n_predict": 1, "stream": True, "cache_prompt": True},
                          timeout=900)
    assert status == 200
    longest = max(len(line) for line in raw.splitlines())
    assert longest > 100_000, f"the final event is {longest} bytes"
