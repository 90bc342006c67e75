"""validate_tool_calls: names a requested tool, arguments are JSON that validates, ids unique."""

from __future__ import annotations

from oaiproxy.conversation.model import ToolCall
from oaiproxy.validation import validate_tool_calls

from .helpers import TOOLS


def test_valid_calls_have_no_problems():
    calls = [ToolCall("call_1", "get_weather", '{"city": "Paris"}'),
             ToolCall("call_2", "search_web", '{"query": "x", "limit": 2}')]
    assert validate_tool_calls(calls, TOOLS) == []


def test_each_kind_of_problem_is_named():
    calls = [
        ToolCall("call_1", "get_wether", '{"city": "Paris"}'),
        ToolCall("call_1", "get_weather", '{"city": "Paris", "unit": "kelvin"}'),
        ToolCall("call_3", "search_web", '{"query": "x", "limit": 9}'),
        ToolCall("call_4", "get_weather", '{"city": "Par'),
        ToolCall("call_5", "get_weather", '{}'),
    ]
    problems = validate_tool_calls(calls, TOOLS)
    text = "\n".join(problems)
    assert "tool_calls[0].function.name 'get_wether' is not one of the request's tools" in text
    assert "tool_calls[1].id 'call_1' repeats" in text
    assert "tool_calls[1].function.arguments.unit" in text
    assert "tool_calls[2].function.arguments.limit" in text
    assert "tool_calls[3].function.arguments is not valid JSON" in text
    assert "tool_calls[4].function.arguments: 'city' is a required property" in text


def test_no_tools_means_any_call_is_a_problem():
    assert validate_tool_calls([ToolCall("call_1", "get_weather", "{}")], [])
