"""Gemma 4: the value syntax written by the grammar from each schema, read back as JSON, split anywhere."""

from __future__ import annotations

import json

import pytest

from oaiproxy.conversation.model import Conversation, ToolSpec
from oaiproxy.dialects.base import StyleError
from oaiproxy.dialects.gemma4 import Gemma4Parser, Gemma4Style, call_text, render_value
from tests.gbnf_oracle import accepts

from .helpers import SEARCH, WEATHER, args_of, parse_every_split, template

GEMMA4 = "google-gemma-4-31B-it.jinja"
INTERLEAVED = "google-gemma-4-31B-it-interleaved.jinja"
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def style(templates_dir, name: str = GEMMA4) -> Gemma4Style:
    return Gemma4Style(template(templates_dir, name))


def grammar(templates_dir, parameters: dict, **kw) -> str:
    tool = ToolSpec("f", "", parameters)
    plan = style(templates_dir).plan(Conversation(messages=ASK, tools=[tool], tool_choice="required", **kw))
    assert plan.grammar
    return plan.grammar


ARGUMENTS = [
    {"city": "Paris"},
    {"text": 'quotes " and \' , backslash \\ newline \n tab \t braces {} [] <tag> ünïcødé 😀'},
    {"n": 3, "x": -2.5, "big": 1e21, "ok": True, "no": False, "none": None},
    {"nested": {"Zed": [1, {"deep": "v"}], "alpha": []}, "list": [[], ["a", "b"]]},
    {},
]


@pytest.mark.parametrize("arguments", ARGUMENTS)
def test_what_the_template_writes_reads_back_as_the_same_arguments(arguments):
    text = call_text("f", json.dumps(arguments))
    content, calls = parse_every_split(Gemma4Parser, text)
    assert content == "" and args_of(calls) == [("f", arguments)]


def test_two_calls_then_the_tool_response_token_ends_the_answer():
    text = (call_text("get_weather", '{"city": "Paris"}') + "\n" + call_text("search_web", '{"query": "a,b}"}')
            + '<|tool_response>response:get_weather{value:<|"|>invented<|"|>}<tool_response|>')
    content, calls = parse_every_split(Gemma4Parser, text)
    assert content == ""
    assert args_of(calls) == [("get_weather", {"city": "Paris"}), ("search_web", {"query": "a,b}"})]


def test_python_spellings_bare_words_and_spaces_from_a_model_outside_the_grammar():
    text = "<|tool_call>call:f{a:True,b:None,c:1.5,d:word}<tool_call|>"
    assert args_of(parse_every_split(Gemma4Parser, text)[1]) == [("f", {"a": True, "b": None, "c": 1.5, "d": "word"})]
    text = '<|tool_call>call:f{ a : 1 , b :<|"|> x <|"|> , c: [ 1 , 2 ] }<tool_call|>'
    assert args_of(parse_every_split(Gemma4Parser, text)[1]) == [("f", {"a": 1, "b": " x ", "c": [1, 2]})]


@pytest.mark.parametrize("text", [
    "Plain answer.",
    "<|tool_call> is followed by no call",
    "<|tool_call>call:not a name{}",
    "<|tool_call>call",
    'Strings <|"|> and <tool_call|> outside a call',
    "<|tool_",
    "",
])
def test_text_that_is_not_a_call(text):
    assert parse_every_split(Gemma4Parser, text) == (text, [])


def test_tools_off_reads_everything_as_text():
    text = call_text("f", '{"a": 1}')
    assert parse_every_split(lambda: Gemma4Parser(enabled=False), text) == (text, [])


@pytest.mark.parametrize("text", ['<|tool_call>call:f{a:<|"|>Par', "<|tool_call>call:f{a:[1,",
                                  "<|tool_call>call:f{a:1;"])
def test_a_cut_or_broken_call_is_flagged(text):
    p = Gemma4Parser()
    p.feed(text)
    p.finish()
    assert p.truncated and len(p.result().tool_calls) == 1
    with pytest.raises(ValueError):
        json.loads(p.result().tool_calls[0].arguments)


def test_the_grammar_writes_sorted_keys_commas_only_between_present_members(templates_dir):
    g = grammar(templates_dir, {"type": "object", "properties": {
        "c": {"type": "integer"}, "b": {"type": "integer"}, "a": {"type": "integer"}}, "required": ["b"]})
    good = ["{b:1}", "{a:1,b:1}", "{b:1,c:1}", "{a:1,b:1,c:1}"]
    bad = ["{}", "{a:1}", "{,b:1}", "{b:1,}", "{b:1,a:1}", "{a:1b:1}", '{"b":1}', "{b: 1}"]
    for body in good:
        assert accepts(g, f"<|tool_call>call:f{body}<tool_call|>"), body
    for body in bad:
        assert not accepts(g, f"<|tool_call>call:f{body}<tool_call|>"), body
    optional = grammar(templates_dir, {"type": "object", "properties": {"a": {"type": "boolean"},
                                                                        "b": {"type": "null"}}})
    for body in ("{}", "{a:true}", "{b:null}", "{a:false,b:null}"):
        assert accepts(optional, f"<|tool_call>call:f{body}<tool_call|>"), body
    assert not accepts(optional, "<|tool_call>call:f{,}<tool_call|>")


def test_values_follow_their_schemas(templates_dir):
    schema = {"type": "object", "properties": {
        "s": {"type": "string", "minLength": 2, "maxLength": 4},
        "e": {"enum": ["x", 2, None, {"k": "v"}]},
        "n": {"type": "integer", "minimum": 1, "maximum": 5},
        "u": {"type": ["string", "null"]},
        "o": {"anyOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                                "maxItems": 2}]},
        "free": {"type": "string"},
    }, "required": ["e", "free", "n", "o", "s", "u"], "additionalProperties": False}
    g = grammar(templates_dir, schema)

    def ok(**args):
        return accepts(g, call_text("f", json.dumps(args)))

    base = {"s": "abc", "e": "x", "n": 3, "u": None, "o": True, "free": "any <text> {x}, \"q\""}
    assert ok(**base)
    for change in ({"e": 2}, {"e": None}, {"e": {"k": "v"}}, {"u": "text"}, {"o": ["a", "b"]}, {"s": "ab"}):
        assert ok(**{**base, **change}), change
    for change in ({"s": "a"}, {"s": "abcde"}, {"e": "y"}, {"n": 0}, {"n": 6}, {"o": []}, {"o": ["a", "b", "c"]},
                   {"u": 1}, {"free": 'has <|"|> inside'}, {"s": "<a>"}):
        assert not ok(**{**base, **change}), change


@pytest.mark.parametrize("prop,what", [
    ({"type": "string", "pattern": "^a+$"}, "pattern"),
    ({"type": "string", "format": "date"}, "format"),
    ({"type": "array", "prefixItems": [{"type": "integer"}]}, "prefixItems"),
    ({"type": "object", "properties": {"a:b": {"type": "integer"}}}, "'a:b'"),
    ({"type": "string", "maxLength": 100000}, "length"),
])
def test_what_the_syntax_cannot_write_is_refused_naming_the_tool(templates_dir, prop, what):
    tool = ToolSpec("odd", "", {"type": "object", "properties": {"x": prop}})
    with pytest.raises(StyleError) as e:
        style(templates_dir).plan(Conversation(messages=ASK, tools=[WEATHER, tool], tool_choice="required"))
    assert e.value.param == "tools[1].function.parameters" and what in str(e.value)


def test_a_schema_that_allows_anything_takes_any_value(templates_dir):
    g = grammar(templates_dir, {"type": "object", "properties": {"v": {}}, "required": ["v"]})
    for value in ("x", 1, [1, {"a": None}], {"k": [True]}):
        assert accepts(g, call_text("f", json.dumps({"v": value}))), value


def test_lazy_trigger_stops_and_preserved_tokens(templates_dir):
    plan = style(templates_dir).plan(Conversation(messages=ASK, tools=[WEATHER, SEARCH]))
    assert plan.grammar_triggers == [{"type": "word", "value": "<|tool_call>"}]
    assert {"<|tool_call>", "<tool_call|>", '<|"|>'} <= set(plan.preserved_tokens)
    assert "<|tool_response>" in plan.stop
    assert accepts(plan.grammar, call_text("get_weather", '{"city": "Paris"}') + "<|tool_response>")


@pytest.mark.parametrize("name", [GEMMA4, INTERLEAVED])
def test_tool_results_render_as_the_template_wants_them(templates_dir, name):
    history = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "search_web", "arguments": '{"query": "x"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "nothing"},
        {"role": "assistant", "content": "It is sunny."},
        {"role": "user", "content": "Thanks"},
    ]
    prompt = style(templates_dir, name).plan(Conversation(messages=history, tools=[WEATHER, SEARCH])).prompt
    spots = [prompt.find(s) for s in (
        '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|>',
        '<|tool_call>call:search_web{query:<|"|>x<|"|>}<tool_call|>',
        '<|tool_response>response:get_weather{value:<|"|>sunny<|"|>}<tool_response|>',
        '<|tool_response>response:search_web{value:<|"|>nothing<|"|>}<tool_response|>',
        "It is sunny.", "Thanks")]
    assert -1 not in spots and spots == sorted(spots), prompt[-900:]
    assert "<|turn>tool" not in prompt


def test_render_value_sorts_keys_as_dictsort():
    assert render_value({"b": 1, "A": [True, None], "a": "x"}) == '{A:[true,null],a:<|"|>x<|"|>,b:1}'
