"""The JSON-calls-in-tags formats (oaiproxy/dialects/json_tags.py) where the registry tables do not reach.

The tables check each format's samples; here: two calls and text around them
split at every point, arguments streaming before the section closes, sections
that turn out to be text, a cut section, the GigaChat history's one call per
turn, and each grammar on the forms the templates write.
"""

from __future__ import annotations

import json

import pytest

from oaiproxy.conversation.model import Conversation
from oaiproxy.dialects import detect_style
from oaiproxy.dialects.base import ToolCallDelta
from oaiproxy.dialects.json_tags import (
    APRIEL,
    FIREFUNCTION_V2,
    GIGACHAT3,
    GIGACHAT31,
    MINIMAX_M1,
    NEMOTRON_V2,
    GigaChat3Style,
    JsonTagsParser,
    TagForm,
)
from tests.gbnf_oracle import accepts

from .helpers import TOOLS, args_of, parse_every_split, template

FORMS = {"apriel": APRIEL, "nemotron-v2": NEMOTRON_V2, "minimax-m1": MINIMAX_M1, "firefunction-v2": FIREFUNCTION_V2,
         "gigachat3": GIGACHAT3, "gigachat3.1": GIGACHAT31}
TEMPLATES = {"apriel": "Apriel-1.6-15b-Thinker-fixed.jinja", "nemotron-v2": "NVIDIA-Nemotron-Nano-v2.jinja",
             "minimax-m1": "MiniMax-M1.jinja", "firefunction-v2": "fireworks-ai-llama-3-firefunction-v2.jinja",
             "gigachat3": "GigaChat3-10B-A1.8B.jinja", "gigachat3.1": "GigaChat3.1-10B-A1.8B.jinja"}
TWO = [("get_weather", '{"city": "Paris", "unit": "celsius"}'), ("search_web", '{"query": "a \\"b\\" ]}", "limit": 2}')]


def parser(form: TagForm):
    return lambda: JsonTagsParser(form)


@pytest.mark.parametrize("name", FORMS)
def test_two_calls_after_text_split_anywhere(name):
    form = FORMS[name]
    text = "Let me check both.\n" + form.write(TWO)
    content, calls = parse_every_split(parser(form), text)
    assert content == "Let me check both.\n"
    assert args_of(calls) == args_of(TWO)


@pytest.mark.parametrize("name", ["apriel", "minimax-m1", "gigachat3.1"])
def test_arguments_stream_before_the_section_ends(name):
    form = FORMS[name]
    text = form.write(TWO)
    p = JsonTagsParser(form)
    cut = text.index("Paris") + 3
    events = p.feed(text[:cut])
    first = [e for e in events if isinstance(e, ToolCallDelta)]
    assert first[0].name == "get_weather" and "".join(e.arguments for e in first) == '{"city": "Par'


@pytest.mark.parametrize("name,text", [
    ("apriel", "Tags like <tool_calls> and </tool_calls> in prose"),
    ("apriel", "<tool_calls>[]</tool_calls>"),  # a list with no call in it
    ("apriel", "<tool_calls>not JSON"),
    ("nemotron-v2", "<TOOLCALL>"),
    ("minimax-m1", "<tool_calls>\n</tool_calls>"),
    ("minimax-m1", "<tool_calls>\n  "),
    ("firefunction-v2", "import functools, then functools.partial"),
    ("firefunction-v2", "functools 3 times"),
    ("gigachat3", "<|message_sep|>\n\nfunction call<|role_sep|>\nnothing"),
    ("gigachat3.1", "text <|function_call"),
])
def test_text_that_is_not_a_call(name, text):
    assert parse_every_split(parser(FORMS[name]), text) == (text, [])


def test_a_list_form_without_its_list_is_text_none_of_it_lost():
    text = '<tool_calls>{"name": "f", "arguments": {"a": 1}}</tool_calls>'
    assert parse_every_split(parser(APRIEL), text) == (text, [])


@pytest.mark.parametrize("name", ["apriel", "minimax-m1", "gigachat3"])
def test_a_cut_section_flags_the_cut_call(name):
    form = FORMS[name]
    text = form.write(TWO)
    cut = text.index('a \\"b')  # inside the second call's arguments
    p = JsonTagsParser(form)
    p.feed(text[:cut])
    p.finish()
    result = p.result()
    assert p.truncated
    assert [c.name for c in result.tool_calls][:1] == ["get_weather"]
    assert json.loads(result.tool_calls[0].arguments) == {"city": "Paris", "unit": "celsius"}


def test_missing_closing_text_keeps_whole_calls():
    for form, text in ((APRIEL, '<tool_calls>[{"name": "f", "arguments": {}}]'),
                       (MINIMAX_M1, '<tool_calls>\n{"name": "f", "arguments": {}}\n')):
        p = JsonTagsParser(form)
        p.feed(text)
        p.finish()
        assert [c.name for c in p.result().tool_calls] == ["f"] and not p.truncated


def test_tools_off_reads_everything_as_text():
    text = APRIEL.write(TWO)
    assert parse_every_split(lambda: JsonTagsParser(APRIEL, enabled=False), text) == (text, [])


@pytest.mark.parametrize("name", FORMS)
def test_detection_and_the_required_grammar_on_the_templates_own_forms(templates_dir, name):
    source = (templates_dir / TEMPLATES[name]).read_text(encoding="utf-8")
    style = detect_style(source)
    assert style.name == name
    dialect = style(template(templates_dir, TEMPLATES[name]))
    grammar = dialect.plan(Conversation(messages=[{"role": "user", "content": "hi"}], tools=list(TOOLS),
                                        tool_choice="required")).grammar
    form = FORMS[name]
    assert accepts(grammar, form.write(TWO))
    assert accepts(grammar, form.write(TWO[:1]))
    if form.lead:  # the lead is optional: the grammar may start where the lazy trigger (the opener) does
        assert accepts(grammar, form.write(TWO[:1])[len(form.lead):])
    assert not accepts(grammar, form.write(TWO[:1]) + "extra")
    single = dialect.plan(Conversation(messages=[{"role": "user", "content": "hi"}], tools=list(TOOLS),
                                       tool_choice="required", parallel_tool_calls=False)).grammar
    assert accepts(single, form.write(TWO[:1])) and not accepts(single, form.write(TWO))


def test_gigachat_history_gives_each_call_its_own_turn(templates_dir):
    dialect = GigaChat3Style(template(templates_dir, TEMPLATES["gigachat3"]))
    calls = [{"id": f"call{i}", "type": "function", "function": {"name": n, "arguments": a}}
             for i, (n, a) in enumerate(TWO)]
    messages = [{"role": "user", "content": "Weather and news?"},
                {"role": "assistant", "content": "Both.", "tool_calls": calls},
                {"role": "tool", "tool_call_id": "call0", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call1", "content": "quiet"},
                {"role": "user", "content": "Thanks."}]
    prompt = dialect.plan(Conversation(messages=messages, tools=list(TOOLS))).prompt
    first, second = (GIGACHAT3.write([c])[len(GIGACHAT3.lead):] for c in TWO)
    assert first in prompt and second in prompt
    assert prompt.index("Both.") < prompt.index(first) < prompt.index(second) < prompt.index("sunny")


def test_firefunction_gets_its_tools_as_functions_and_the_date(templates_dir):
    from oaiproxy.dialects.json_tags import FireFunctionV2Style

    dialect = FireFunctionV2Style(template(templates_dir, TEMPLATES["firefunction-v2"]))
    assert dialect.template.supports_tools  # the template's own tools text, not the fallback prompt
    prompt = dialect.plan(Conversation(messages=[{"role": "user", "content": "hi"}], tools=list(TOOLS))).prompt
    spec = prompt.split("Available functions as JSON spec:\n", 1)[1].split("\nToday is ", 1)[0]
    assert [t["function"]["name"] for t in json.loads(spec)] == ["get_weather", "search_web"]
    assert "Today is ." not in prompt
