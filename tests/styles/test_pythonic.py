"""The pythonic format (LFM2.5): Python literals in the grammar, JSON arguments out of the parser."""

from __future__ import annotations

import json
import random

import pytest

from oaiproxy.conversation.model import Conversation, ToolSpec
from oaiproxy.dialects.base import StyleError
from oaiproxy.dialects.pythonic import LFM2Style, LiteralError, PythonicParser, call_text, literal_json, python_literal
from oaiproxy.templating.chat_template import ChatTemplate
from oaiproxy.validation import validate_tool_calls
from tests.gbnf_oracle import accepts, sample

from .helpers import args_of, parse_every_split

RICH = ToolSpec("plan_trip", "Plan a trip", {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 6},
        "days": {"type": "integer", "minimum": 1, "maximum": 9},
        "budget": {"type": ["number", "null"]},
        "direct": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["sea", "it's"]}, "maxItems": 2},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "extra": {"type": "object", "properties": {"k": {"type": "boolean"}}, "required": ["k"]},
        "mode": {"anyOf": [{"type": "null"}, {"const": "fast"}]},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
})


def _plan(tools: list[ToolSpec], choice: str = "required"):
    style = LFM2Style(ChatTemplate.default())
    return style.plan(Conversation(messages=[{"role": "user", "content": "hi"}], tools=tools, tool_choice=choice))


def _grammar(tools: list[ToolSpec]) -> str:
    grammar = _plan(tools).grammar
    assert grammar is not None
    return grammar


def _wrap(call: str) -> str:
    return f"<|tool_call_start|>[{call}]<|tool_call_end|>"


@pytest.mark.parametrize("call", [
    "plan_trip(city='Paris', days=3)",
    'plan_trip(city="Paris", days=3)',
    "plan_trip(city='it\\'s', days=1, budget=None, direct=True)",
    "plan_trip(city='Rome', days=2, budget=-1.5e2, tags=['sea', 'it\\'s'])",
    "plan_trip(city='Rome', days=2, tags=[], code=\"ABC\", extra={\"k\": true}, mode='fast')",
    "plan_trip(city='a\\nb', days=9, mode=None)",
])
def test_the_grammar_writes_python_literals_within_the_schema(call):
    assert accepts(_grammar([RICH]), _wrap(call)), call


@pytest.mark.parametrize("call", [
    "plan_trip(city='Paris', days=true)",  # not a Python literal... nor an integer
    "plan_trip(city='Paris', days=3, direct=true)",  # JSON's spelling of a Python bool
    "plan_trip(city='Paris', days=3, budget=null)",
    "plan_trip(city='Parisss', days=3)",  # maxLength 6
    "plan_trip(city='', days=3)",  # minLength 1
    "plan_trip(city='Paris')",  # days is required
    "plan_trip(days=3, city='Paris')",  # declared order
    "plan_trip(city='Paris', days=3, code='ABC')",  # a pattern: only the converter's JSON string
    "plan_trip(city='Paris', days=3, tags=['sea', 'sea', 'sea'])",  # maxItems 2
    "plan_trip(city='Paris', days=3, mode='slow')",
    "plan_trip(city='Par'is', days=3)",
    "plan_trip(city='Paris', days=3, color='red')",  # undeclared
])
def test_the_grammar_refuses_what_the_schema_does_not_allow(call):
    assert not accepts(_grammar([RICH]), _wrap(call)), call


def test_whatever_the_grammar_admits_parses_to_valid_arguments():
    grammar = _grammar([RICH])
    rng = random.Random(12)
    for _ in range(60):
        text = sample(grammar, rng)
        parser = PythonicParser()
        parser.feed(text)
        parser.finish()
        result = parser.result()
        assert result.tool_calls and not parser.truncated, text
        assert validate_tool_calls(result.tool_calls, [RICH]) == [], (text, result)


@pytest.mark.parametrize("literal,expected", [
    ("'it\\'s'", "it's"),
    ("'a\\\\b\\n'", "a\\b\n"),
    ('"caf\\u00e9 \\"q\\""', 'café "q"'),
    ("True", True), ("False", False), ("None", None),
    ("-0.5e-3", -0.5e-3), ("12", 12),
    ("[1, 'x', [True, None]]", [1, "x", [True, None]]),
    ('{"a": true, "b": [null, 1.5]}', {"a": True, "b": [None, 1.5]}),
    ("{'a': 1}", {"a": 1}),
])
def test_literals_read_as_json(literal, expected):
    assert json.loads(literal_json(literal)) == expected


def test_numbers_keep_their_spelling():
    assert literal_json("1e5") == "1e5" and literal_json("[1.50]") == "[1.50]"


@pytest.mark.parametrize("literal", ["", "'open", "[1, 2", "[1 2]", "x", "{1: 2}", "'a' 'b'", "1 2"])
def test_what_is_not_a_literal_is_refused(literal):
    with pytest.raises(LiteralError):
        literal_json(literal)


@pytest.mark.parametrize("value", ["it's \\ \"x\"\n\t", "", 3, -2.5, True, None, ["a", [False]], {"k": [None]}])
def test_python_literal_round_trips(value):
    assert json.loads(literal_json(python_literal(value))) == value


def test_call_text_is_what_the_template_writes():
    assert call_text("get_weather", '{"city": "Paris", "n": 2, "ok": true}') == \
        "get_weather(city='Paris', n=2, ok=True)"
    assert call_text("g", "{}") == "g()"


def test_two_calls_split_anywhere():
    text = ("Let me look.<|tool_call_start|>[f(a='x, y)', b=[1, {\"c\": \"]\"}], c=None), "
            "g(), h(s=\"(\")]<|tool_call_end|>")
    content, calls = parse_every_split(PythonicParser, text)
    assert content == "Let me look."
    assert args_of(calls) == [("f", {"a": "x, y)", "b": [1, {"c": "]"}], "c": None}), ("g", {}), ("h", {"s": "("})]


@pytest.mark.parametrize("text", [
    "<|tool_call_start|> is just mentioned",
    "<|tool_call_start|>[not a call]",
    "<|tool_call_start|>[(x=1)]",
    "<|tool_call_start",
])
def test_text_that_is_not_a_call(text):
    assert parse_every_split(PythonicParser, text) == (text, [])


def test_a_call_cut_in_a_value_is_truncated():
    parser = PythonicParser()
    parser.feed("<|tool_call_start|>[write_note(text='Par")
    parser.finish()
    (call,) = parser.result().tool_calls
    assert parser.truncated and call.name == "write_note" and call.arguments == "{"


def test_a_call_that_leaves_the_syntax_is_cut_and_the_rest_is_content():
    parser = PythonicParser()
    parser.feed("<|tool_call_start|>[f(a=1 b=2)] then text")
    parser.finish()
    assert parser.truncated and [c.name for c in parser.result().tool_calls] == ["f"]


@pytest.mark.parametrize("prop,what", [
    ({}, "any type"),
    ({"type": "array", "items": {"type": "string"}, "contains": {"const": "a"}}, "contains"),
    ({"type": "array", "prefixItems": [{"type": "string"}]}, "prefixItems"),
    ({"type": "array"}, "any type"),  # items of any type
])
def test_values_without_an_exact_python_spelling_are_refused(prop, what):
    tool = ToolSpec("f", "", {"type": "object", "properties": {"x": prop}})
    with pytest.raises(StyleError) as e:
        _plan([tool])
    assert e.value.param == "tools[0].function.parameters" and "'x'" in str(e.value) and what in str(e.value)


def test_a_parameter_name_must_be_an_identifier():
    tool = ToolSpec("f", "", {"type": "object", "properties": {"first-name": {"type": "string"}}})
    with pytest.raises(StyleError, match="first-name"):
        _plan([tool])


def test_optional_parameters_only_take_their_commas_when_present():
    tool = ToolSpec("f", "", {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}})
    grammar = _grammar([tool])
    for call in ("f()", "f(a=1)", "f(b=2)", "f(a=1, b=2)"):
        assert accepts(grammar, _wrap(call)), call
    for call in ("f(, b=2)", "f(a=1,)", "f(a=1b=2)", "f(b=2, a=1)"):
        assert not accepts(grammar, _wrap(call)), call
