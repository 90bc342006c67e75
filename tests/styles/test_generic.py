"""The generic scheme's prompt: examples with real values, a second pattern for answering without a call,
and a ``none`` prompt that is the ``auto`` prompt (prefix-stable for llama-server's cache)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from oaiproxy.conversation.model import Conversation, ResponseFormat
from oaiproxy.dialects.generic import GenericParser, GenericStyle, envelope, example_values
from oaiproxy.templating.chat_template import ChatTemplate
from tests.gbnf_oracle import accepts

from .helpers import HISTORY, TOOLS, WEATHER, parse_every_split, template

ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def _plan(choice="auto", messages=ASK, tpl=None, **kw):
    style = GenericStyle(tpl or ChatTemplate.default())
    return style.plan(Conversation(messages=list(messages), tools=list(TOOLS), tool_choice=choice, **kw))


def _example_replies(prompt: str) -> list[str]:
    """The example replies the system text shows: the envelopes (JSON lines) before the conversation."""
    head = prompt.split("What is the weather in Paris?")[0]
    replies = []
    for line in head.splitlines():
        text = line.split("Assistant: ", 1)[-1]
        try:
            if "thought_about_next_step_only" in json.loads(text):
                replies.append(text)
        except ValueError:
            pass  # the format line, with <placeholders>
    return replies


def test_examples_show_values_not_placeholders():
    """The base model copied the example's "..." into every call; the examples now carry real values."""
    prompt = _plan().prompt
    assert '"..."' not in prompt and "<tool name>" in prompt  # the format line keeps its names, not values
    replies = _example_replies(prompt)
    assert replies, prompt
    for reply in replies:
        content, calls = parse_every_split(GenericParser, reply)
        for _, arguments in calls:
            args = json.loads(arguments)
            assert args and all(v not in ("...", "", None) for v in args.values()), reply


def test_auto_shows_a_call_and_an_answer_required_only_a_call():
    """Two patterns under auto, so the model may answer without a call; required shows no answer."""
    def kinds(prompt):
        out = set()
        for reply in _example_replies(prompt):
            content, calls = parse_every_split(GenericParser, reply)
            out.add("call" if calls else "answer" if content else "?")
        return out

    assert kinds(_plan("auto").prompt) == {"call", "answer"}
    assert kinds(_plan("required").prompt) == {"call"}


def test_the_answer_example_follows_the_response_format():
    schema = {"type": "object", "properties": {"temp": {"type": "integer", "minimum": 5}}, "required": ["temp"]}
    prompt = _plan(response_format=ResponseFormat("json_schema", schema, "w", True)).prompt
    answers = [json.loads(r)["next_step"]["result"] for r in _example_replies(prompt)
               if "result" in json.loads(r)["next_step"]]
    assert len(answers) == 1
    jsonschema.validate(answers[0], schema)


@pytest.mark.parametrize("filename", ["default", "google-gemma-2-2b-it.jinja"])
def test_none_renders_the_auto_prompt_and_only_its_grammar_forbids_calls(templates_dir, filename):
    """``none`` after a tool result used to drop the tool section: no prefix shared with the turn before or
    after, and llama-server processed the whole prompt again. Now the prompts are the same text."""
    tpl = ChatTemplate.default() if filename == "default" else template(templates_dir, filename)
    auto, none = _plan("auto", HISTORY, tpl), _plan("none", HISTORY, tpl)
    assert none.prompt == auto.prompt
    assert "get_weather" in none.prompt and "And in Berlin?" in none.prompt
    # the turn before (the first question alone) is a prefix up to the end of its conversation
    first = _plan("auto", HISTORY[:2], tpl).prompt
    cut = first.index("What is the weather in Paris?") + len("What is the weather in Paris?")
    assert none.prompt[:cut] == first[:cut]
    call = envelope("x", {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Berlin"}}]})
    answer = envelope("", {"result": "Cloudy."})
    assert accepts(auto.grammar, call) and accepts(auto.grammar, answer)
    assert accepts(none.grammar, answer) and not accepts(none.grammar, call)
    # nothing to decide: the thought is empty, so a small max_tokens still reaches the answer
    assert accepts(auto.grammar, envelope("I know it.", {"result": "Cloudy."}))
    assert not accepts(none.grammar, envelope("I know it.", {"result": "Cloudy."}))
    content, calls = parse_every_split(lambda: _plan("none", HISTORY, tpl).parser, answer)
    assert (content, calls) == ("Cloudy.", [])


def test_an_answer_cut_before_any_call_is_not_a_truncated_call():
    """``none`` cut by n_predict inside the thought or the answer: no call was begun, none is reported cut."""
    for text in ('{"thought_about_next_step_only": "The weather in Par',
                 '{"thought_about_next_step_only": "", "next_step": {"result": "It is sun'):
        parser = _plan("none").parser
        parser.feed(text)
        parser.finish()
        assert not parser.truncated and parser.result().tool_calls == [], text
    parser = _plan("auto").parser
    parser.feed('{"thought_about_next_step_only": "", "next_step": {"tool_calls": [{"name": "get_weather", "argu')
    parser.finish()
    assert parser.truncated  # a call begun and cut is


def test_none_with_a_response_format_answers_that_format():
    plan = _plan("none", response_format=ResponseFormat("json_object"))
    assert accepts(plan.grammar, envelope("", {"result": {"a": 1}}))
    assert not accepts(plan.grammar, envelope("", {"result": "text"}))
    assert plan.prompt == _plan("auto", response_format=ResponseFormat("json_object")).prompt


def test_without_tools_there_is_no_envelope():
    plan = GenericStyle(ChatTemplate.default()).plan(Conversation(messages=ASK, tools=[], tool_choice="none"))
    assert plan.grammar is None and "thought_about_next_step_only" not in plan.prompt
    content, calls = parse_every_split(lambda: GenericStyle(ChatTemplate.default()).plan(
        Conversation(messages=ASK, tools=[])).parser, "It is sunny.")
    assert (content, calls) == ("It is sunny.", [])


# -- example values -------------------------------------------------------------------------------

SCHEMAS = [
    WEATHER.parameters,
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 9}}, "required": ["n"]},
    {"type": "object", "properties": {"x": {"type": "number", "maximum": -2}}, "required": ["x"]},
    {"type": "object", "properties": {"tags": {"type": "array", "minItems": 2, "items": {"type": "string"}}},
     "required": ["tags"]},
    {"type": "object", "properties": {"who": {"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}, "required": ["name", "age"]}},
     "required": ["who"]},
    {"type": "object", "properties": {"mode": {"enum": ["fast", "slow"]}, "on": {"type": "boolean"},
                                      "v": {"type": ["null", "integer"]}, "k": {"const": 7}},
     "required": ["mode", "on", "v", "k"]},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date"},
                                      "to": {"type": "string", "format": "email"}}, "required": ["when", "to"]},
    {"type": "object", "properties": {"a": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}, "required": ["a"]},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_example_values_are_valid_and_concrete(schema):
    value = example_values(schema)
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
    assert "..." not in json.dumps(value)
    assert set(value) == set(schema["required"])  # required keys only, in the schema's order
    assert list(value) == [k for k in schema["properties"] if k in schema["required"]]


def test_example_values_take_the_schema_and_description_hints():
    assert example_values({"type": "string", "examples": ["Oslo"]}) == "Oslo"
    assert example_values({"type": "integer", "default": 4}) == 4
    assert example_values({"type": "string", "description": "City name, e.g. Paris"}) == "Paris"
    assert example_values({"type": "string", "description": "An expression, e.g. 12 * (3 + 4)"}) == "12 * (3 + 4)"
    assert example_values({"type": "string", "description": "Date as YYYY-MM-DD"}) == "2024-01-31"
    assert example_values({"type": "string", "description": "Start time as HH:MM (24h)"}) == "09:00"


@pytest.mark.parametrize("schema", [{"type": {"a": 1}}, {"anyOf": "x"}, {"required": "a", "properties": []},
                                    {"type": "array", "items": [1]}, "nope", {"description": 3, "type": "string"}])
def test_example_values_never_raise(schema):
    example_values(schema)
