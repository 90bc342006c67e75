"""GrammarBuilder: several schemas and literal text composed into one grammar, names stable and deduplicated."""

import json

import pytest

from oaiproxy.grammar import GrammarBuilder, gbnf_literal
from tests.gbnf_oracle import accepts

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TIME = {"type": "object", "properties": {"tz": {"enum": ["UTC", "CET"]}}, "required": ["tz"]}


def test_tool_call_grammar_with_literals_around_json():
    b = GrammarBuilder(additional_properties=False)
    calls = []
    for name, schema in (("get_weather", WEATHER), ("get_time", TIME)):
        head = b.literal('<tool_call>{"name": ' + json.dumps(name) + ', "arguments": ')
        calls.append(f'{head} {b.add_schema(schema, name)} {b.literal("}</tool_call>")}')
    call = b.add_rule("call", " | ".join(calls))
    grammar = b.to_gbnf(f'{call} ("\\n" {call})*')
    assert grammar.startswith("root ::= ")
    good = '<tool_call>{"name": "get_weather", "arguments": {"city": "Zürich"}}</tool_call>'
    assert accepts(grammar, good)
    assert accepts(grammar, good + '\n<tool_call>{"name": "get_time", "arguments": {"tz":"CET"}}</tool_call>')
    assert not accepts(grammar, '<tool_call>{"name": "get_time", "arguments": {"city": "x"}}</tool_call>')
    assert not accepts(grammar, '<tool_call>{"name": "get_weather", "arguments": {"city": "x", "k": 1}}</tool_call>')
    names = [line.split(" ::= ")[0] for line in grammar.splitlines()]
    assert "get-weather" in names and "get-weather-city-kv" in names and "get-time-tz" in names
    assert len(names) == len(set(names))


def test_add_rule_dedupes_and_suffixes():
    b = GrammarBuilder()
    assert b.add_rule("a", '"x"') == "a"
    assert b.add_rule("b", '"x"') == "a"  # same body: reused
    assert b.add_rule("a", '"y"') == "a-2"  # same name, other body: suffixed
    assert b.add_rule("string", '"z"') == "string-2"  # shared primitive names are reserved
    assert b.add_rule("weird name_1", '"w"') == "weird-name-1"
    assert b.ws == "ws" and accepts(b.to_gbnf(f'"a" {b.ws} "b"'), "a b")


def test_primitive_result_and_root_rule():
    b = GrammarBuilder()
    assert b.add_schema({"type": "string"}, "text") == "string"
    assert accepts(b.to_gbnf("string"), '"hi"')
    b2 = GrammarBuilder()
    root = b2.add_schema(WEATHER, "root")
    assert root == "root"
    assert b2.to_gbnf(root).count("root ::=") == 1
    with pytest.raises(ValueError):
        b2.to_gbnf("string")


@pytest.mark.parametrize("text", ["plain", 'quo"te', "back\\slash", "new\nline\ttab\r", "é😀", "\x00\x7f", "[]-^"])
def test_gbnf_literal_round_trips(text):
    assert accepts(f"root ::= {gbnf_literal(text)}", text)
    assert not accepts(f"root ::= {gbnf_literal(text)}", text + "x")
