"""Shared test material for the dialects: sample tools, templates, and the split-invariance check."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from oaiproxy.conversation.model import ToolSpec
from oaiproxy.dialects.base import ContentDelta, OutputParser, ParsedOutput, ToolCallDelta
from oaiproxy.templating.chat_template import ChatTemplate

WEATHER = ToolSpec(
    "get_weather",
    "Get the current weather for a city",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 24, "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
        "additionalProperties": False,
    },
)
SEARCH = ToolSpec(
    "search_web",
    "Search the web",
    {
        "type": "object",
        "properties": {"query": {"type": "string", "maxLength": 32}, "limit": {"type": "integer", "minimum": 1,
                                                                              "maximum": 5}},
        "required": ["query"],
        "additionalProperties": False,
    },
)
TOOLS = [WEATHER, SEARCH]

#: a history with a call, its result and a follow-up question
HISTORY = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_abc123", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_abc123", "content": "sunny, 21 degrees"},
    {"role": "assistant", "content": "It is sunny in Paris."},
    {"role": "user", "content": "And in Berlin?"},
]


def template(templates_dir: Path, filename: str) -> ChatTemplate:
    path = templates_dir / filename
    assert path.is_file(), f"missing llama.cpp template {path}"
    return ChatTemplate(path.read_text(encoding="utf-8"), bos_token="<s>", eos_token="</s>", name=filename)


def run(parser: OutputParser, text: str, cuts: list[int]) -> tuple[list, ParsedOutput]:
    events = []
    prev = 0
    for cut in [*cuts, len(text)]:
        events += parser.feed(text[prev:cut])
        prev = cut
    events += parser.finish()
    return events, parser.result()


def summarize(events: list, result: ParsedOutput) -> tuple[str, list[tuple[str, str]]]:
    """(content, [(name, arguments)]) from the events, checked against the final result."""
    content = "".join(e.text for e in events if isinstance(e, ContentDelta))
    calls: dict[int, dict] = {}
    for e in events:
        if isinstance(e, ToolCallDelta):
            if e.index not in calls:
                assert e.id and e.name is not None, f"first delta of call {e.index} lacks id/name: {e}"
                assert e.index == len(calls), "call indexes must count up from 0"
                calls[e.index] = {"id": e.id, "name": e.name, "args": ""}
            else:
                assert e.id is None and e.name is None, f"id/name sent twice for call {e.index}"
            calls[e.index]["args"] += e.arguments
    assert (result.content or "") == content.strip() or (result.content or "") == content or \
        (not content.strip() and result.content is None), (result.content, content)
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == \
        [(c["id"], c["name"], c["args"]) for c in calls.values()]
    ids = [c.id for c in result.tool_calls]
    assert len(set(ids)) == len(ids), f"duplicate call ids {ids}"
    return content, [(c["name"], c["args"]) for c in calls.values()]


def parse_every_split(make_parser: Callable[[], OutputParser], text: str) -> tuple[str, list[tuple[str, str]]]:
    """Parse ``text`` whole, split at every point, and one character at a time: all must agree."""
    whole = summarize(*run(make_parser(), text, []))
    for cut in range(len(text) + 1):
        assert summarize(*run(make_parser(), text, [cut])) == whole, f"split at {cut}: {text[:cut]!r} | {text[cut:]!r}"
    assert summarize(*run(make_parser(), text, list(range(1, len(text))))) == whole, "one character at a time"
    return whole


def args_of(calls: list[tuple[str, str]]) -> list[tuple[str, object]]:
    return [(name, json.loads(args)) for name, args in calls]
