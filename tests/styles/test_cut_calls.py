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
       "parallel_tool_calls": False, "temperature": 0, "seed": 7}
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


@pytest.fixture(scope="module")
def proxies(upstream: Upstream, templates_dir):
    """Per dialect, a default proxy and an incremental-stream proxy, both in front of the session's server."""
    made: dict[str, tuple[ProxyProcess, ProxyProcess]] = {}
    try:
        for style, filename in DIALECTS:
            args = ["--endpoint", upstream.url, *_template_args(templates_dir, filename)]
            made[style] = (ProxyProcess(args), ProxyProcess([*args, "--stream-tool-calls", "incremental"]))
        yield made
    finally:
        for pair in made.values():
            for p in pair:
                p.stop()


@pytest.mark.parametrize("style", [s for s, _ in DIALECTS])
def test_a_call_cut_by_max_tokens_is_dropped_streamed_and_not(proxies, style: str) -> None:
    whole, incremental = proxies[style]
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


@pytest.mark.parametrize("style", [s for s, _ in DIALECTS])
def test_a_client_stop_string_inside_a_call_is_a_cut(proxies, style: str) -> None:
    # the call's own argument key as the dialect spells it, which every grammar forces right after the name
    whole, incremental = proxies[style]
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
