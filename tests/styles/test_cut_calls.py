"""Calls cut in the middle of their arguments, in every dialect, on the real llama-server and default model.

A named tool whose only argument is a long required string cannot be finished
within a few tokens, so the generation ends inside the call's arguments. The
proxy must then answer ``finish_reason: "length"`` with no call — non-streamed,
and streamed by default — and a client stop string that matches inside a call
ends it the same way (``finish_reason: "stop"``). The incremental stream mode,
which sends arguments as they are generated, shows that a call really had
started: that is what it gives up, and what makes these tests unable to pass
vacuously.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from oaiproxy.dialects import get_style
from tests._processes import LlamaServer as Upstream
from tests._processes import ProxyProcess
from tests.foundation.test_proxy import post
from tests.styles.test_e2e import DIALECTS

pytestmark = pytest.mark.integration

NOTE = [{"type": "function", "function": {
    "name": "write_note", "description": "Save a note",
    "parameters": {"type": "object", "properties": {"text": {"type": "string", "minLength": 400}},
                   "required": ["text"], "additionalProperties": False}}}]
ASK = {"messages": [{"role": "user", "content": "Write a note about Paris."}], "tools": NOTE,
       "tool_choice": {"type": "function", "function": {"name": "write_note"}},
       "parallel_tool_calls": False, "temperature": 0, "seed": 7,
       # thinking templates: no reasoning phase, so the few tokens go to the call (tests/reasoning covers that)
       "reasoning_effort": "none"}
#: room for the opening and the name in every dialect (the generic envelope's thought included), not the note
MAX_TOKENS = 80


def _stream(url: str, body: dict[str, Any]) -> tuple[dict[int, dict[str, str]], str | None, list[dict]]:
    req = urllib.request.Request(url + "/chat/completions", data=json.dumps({**body, "stream": True}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        lines = [ln.decode().strip() for ln in r if ln.strip()]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert not any("error" in e for e in events), events[-3:]
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for e in events:
        for choice in e["choices"]:
            finish = choice.get("finish_reason") or finish
            for tc in choice["delta"].get("tool_calls") or []:
                held = calls.setdefault(tc["index"], {"name": "", "arguments": ""})
                held["name"] += tc["function"].get("name") or ""
                held["arguments"] += tc["function"].get("arguments") or ""
    return calls, finish, events


def _template_args(templates_dir, filename: str) -> list[str]:
    return [] if filename == "default" else ["--chat-template-file", str(templates_dir / filename)]


@pytest.fixture(scope="module", params=[s for s, _ in DIALECTS])
def pair(request: pytest.FixtureRequest, upstream: Upstream, templates_dir) -> Iterator[tuple[str, ProxyProcess,
                                                                                               ProxyProcess]]:
    """One dialect at a time: its default proxy and an incremental-stream proxy, both in front of the session's
    server (pytest runs every test of a dialect before starting the next one's pair)."""
    style = request.param
    filename = dict(DIALECTS)[style]
    args = ["--endpoint", upstream.url, *_template_args(templates_dir, filename)]
    whole = ProxyProcess(args)
    try:
        incremental = ProxyProcess([*args, "--stream-tool-calls", "incremental"])
    except BaseException:
        whole.stop()
        raise
    try:
        yield style, whole, incremental
    finally:
        whole.stop()
        incremental.stop()


def test_a_call_cut_by_max_tokens_is_dropped_streamed_and_not(pair: tuple[str, ProxyProcess, ProxyProcess]) -> None:
    _, whole, incremental = pair
    body = {**ASK, "max_tokens": MAX_TOKENS}
    # evidence that the cut falls inside a started call: the incremental stream shows its name, half-written
    started, finish, _ = _stream(incremental.base_url, body)
    assert finish == "length"
    assert [c["name"] for c in started.values()] == ["write_note"], started
    with pytest.raises(ValueError):
        json.loads(started[0]["arguments"] or "")
    calls, finish, _ = _stream(whole.base_url, body)
    assert (calls, finish) == ({}, "length")
    status, out = post(whole.base_url + "/chat/completions", body, timeout=300)
    assert status == 200, out
    choice = out["choices"][0]
    assert choice["finish_reason"] == "length" and not choice["message"].get("tool_calls"), choice


def test_a_client_stop_string_inside_a_call_is_a_cut(pair: tuple[str, ProxyProcess, ProxyProcess]) -> None:
    # the call's own argument key as the dialect spells it, which every grammar forces right after the name
    style, whole, incremental = pair
    samples = get_style(style).samples
    assert samples is not None
    body = {**ASK, "max_tokens": MAX_TOKENS, "stop": [samples.argument_key("text")]}
    status, out = post(whole.base_url + "/chat/completions", body, timeout=300)
    assert status == 200, out  # was a 500 "invalid_tool_call": the cut call went to the validator
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop" and not choice["message"].get("tool_calls"), choice
    calls, finish, _ = _stream(whole.base_url, body)
    assert (calls, finish) == ({}, "stop")
    started, finish, _ = _stream(incremental.base_url, body)
    assert finish == "stop" and [c["name"] for c in started.values()] == ["write_note"], started
