"""The GLM ``<arg_key>``/``<arg_value>`` dialect and its Hy3 spelling: grammar, parser, and each template's own text."""

from __future__ import annotations

import json

import pytest

from oaiproxy.conversation.model import Conversation, ToolSpec
from oaiproxy.dialects import detect_style
from oaiproxy.dialects.glm import GLM, HY3, GlmHy3Style, GlmParser, GlmStyle, Tags, calls_text
from oaiproxy.dialects.prompting import history_for_template, openai_tool
from oaiproxy.templating.chat_template import ChatTemplate
from tests.gbnf_oracle import accepts

from .helpers import args_of, parse_every_split, template
from .test_template_coverage import TEMPLATES, _after_generation_prompt, _strip_end

NOTE = ToolSpec("save", "Save a note", {
    "type": "object",
    "properties": {"text": {"type": "string"}, "count": {"type": "integer"},
                   "meta": {"type": "object", "properties": {"tag": {"type": "string"}}}},
    "required": ["text"], "additionalProperties": False})
PING = ToolSpec("ping", "Ping", {"type": "object", "properties": {}})
RAW = {"save": frozenset({"text"})}
GLM_TEMPLATES = GlmStyle.samples.templates if GlmStyle.samples else ()


def glm(tags: Tags = GLM, raw=RAW):
    return lambda: GlmParser(enabled=True, raw_keys=raw, tags=tags)


def plan(style, tools=(NOTE, PING), **kw):
    kw.setdefault("tool_choice", "required")
    return style.plan(Conversation(messages=[{"role": "user", "content": "hi"}], tools=list(tools), **kw))


# -- the parser -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    # GLM-4.6 / Ling layout, GLM-4.7 / Laguna-S layout, Laguna-XS layout
    "<tool_call>save\n<arg_key>text</arg_key>\n<arg_value>a < b </arg_value></tool_call>\n"
    "<tool_call>ping\n</tool_call>",
    "<tool_call>save<arg_key>text</arg_key><arg_value>a < b </arg_value></tool_call><tool_call>ping</tool_call>",
    "<tool_call>save\n<arg_key>text</arg_key>\n<arg_value>a < b </arg_value>\n</tool_call>\n"
    "<tool_call>ping</tool_call>\n",
])
def test_two_calls_in_every_layout_split_anywhere(text):
    content, calls = parse_every_split(glm(), text)
    assert content.strip() == ""
    assert args_of(calls) == [("save", {"text": "a < b "}), ("ping", {})]


def test_raw_string_keeps_everything_but_its_closing_tag():
    value = "line 1\n</arg_val <arg_value> </arg_key> ünïcode \"quoted\" \\ end"
    text = f"Sure.<tool_call>save<arg_key>text</arg_key><arg_value>{value}</arg_value></tool_call>"
    content, calls = parse_every_split(glm(), text)
    assert content == "Sure."
    assert args_of(calls) == [("save", {"text": value})]


def test_raw_string_streams_before_the_value_ends():
    parser = GlmParser(enabled=True, raw_keys=RAW)
    events = parser.feed("<tool_call>save<arg_key>text</arg_key><arg_value>hello wor</arg_")
    streamed = "".join(getattr(e, "arguments", "") for e in events)
    assert streamed == '{"text": "hello wor'  # the possible start of </arg_value> is held back


def test_json_values_are_json_and_may_hold_the_closing_tag():
    text = ('<tool_call>save\n<arg_key>text</arg_key>\n<arg_value>x</arg_value>\n<arg_key>count</arg_key>\n'
            '<arg_value>12</arg_value>\n<arg_key>meta</arg_key>\n<arg_value>{"tag": "</arg_value>"}</arg_value>\n'
            '</tool_call>')
    _, calls = parse_every_split(glm(), text)
    assert args_of(calls) == [("save", {"text": "x", "count": 12, "meta": {"tag": "</arg_value>"}})]


@pytest.mark.parametrize("value,expected", [("2 apples", "2 apples"), ("true story", "true story"), ("", ""),
                                            ("[1, 2]", [1, 2]), (" 7 ", 7), ("{oops", "{oops")])
def test_an_undeclared_value_is_json_when_it_is_json_else_text(value, expected):
    text = f"<tool_call>f<arg_key>v</arg_key><arg_value>{value}</arg_value></tool_call>"
    _, calls = parse_every_split(glm(raw={}), text)
    assert args_of(calls) == [("f", {"v": expected})]


@pytest.mark.parametrize("text", [
    "Plain answer.",
    "A tag that never completes: <tool_c",
    "<tool_call> followed by prose",
    "<tool_call>\n<arg_key>",
    '<tool_call>{"name": "f", "arguments": {}}</tool_call>',
])
def test_text_that_is_not_a_call(text):
    assert parse_every_split(glm(), text) == (text, [])


def test_tools_off_reads_everything_as_text():
    text = "<tool_call>ping</tool_call>"
    assert parse_every_split(lambda: GlmParser(enabled=False, raw_keys={}), text) == (text, [])


@pytest.mark.parametrize("text", ["<tool_call>save", "<tool_call>save<arg_key>te",
                                  "<tool_call>save<arg_key>text</arg_key><arg_value>abc</arg_va"])
def test_a_cut_call_is_announced_and_flagged(text):
    parser = GlmParser(enabled=True, raw_keys=RAW)
    parser.feed(text)
    parser.finish()
    (call,) = parser.result().tool_calls
    assert parser.truncated and call.name == "save"
    with pytest.raises(ValueError):
        json.loads(call.arguments)


def test_hy3_section_of_two_calls():
    text = ("Checking.\n<tool_calls:opensource>\n<tool_call:opensource>save<tool_sep:opensource>\n"
            "<arg_key:opensource>text</arg_key:opensource>\n<arg_value:opensource>a</arg_value> b"
            "</arg_value:opensource>\n</tool_call:opensource>\n<tool_call:opensource>ping<tool_sep:opensource>\n"
            "</tool_call:opensource>\n</tool_calls:opensource>")
    content, calls = parse_every_split(glm(HY3), text)
    assert content == "Checking.\n"
    assert args_of(calls) == [("save", {"text": "a</arg_value> b"}), ("ping", {})]


def test_hy3_plain_glm_tags_are_text():
    text = "<tool_call>ping</tool_call>"
    assert parse_every_split(glm(HY3), text) == (text, [])


# -- the grammar ----------------------------------------------------------------------------


@pytest.mark.parametrize("style_cls", [GlmStyle, GlmHy3Style])
def test_required_grammar(templates_dir, style_cls):
    assert style_cls.samples is not None
    tags = style_cls.tags
    style = style_cls(template(templates_dir, style_cls.samples.representative))
    grammar = plan(style).grammar
    good = [("save", json.dumps({"text": "a < b\n</arg_val", "count": 3})), ("ping", "{}")]
    assert accepts(grammar, calls_text(tags, good))
    assert accepts(grammar, calls_text(tags, [("save", json.dumps({"text": "x", "meta": {"tag": "</arg_value>"}}))]))
    for bad in ([("save", json.dumps({"text": f"a{tags.value_close}b"}))],  # the raw text holds its end
                [("save", json.dumps({"count": 3}))],  # a required key missing
                [("save", json.dumps({"text": "a", "count": "three"}))],
                [("save", json.dumps({"count": 3, "text": "a"}))],  # not in the schema's order
                [("pong", "{}")]):
        assert not accepts(grammar, calls_text(tags, bad)), bad


def test_the_grammar_allows_each_templates_newlines_and_no_more(templates_dir):
    grammar = plan(GlmStyle(template(templates_dir, "GLM-4.6.jinja"))).grammar
    assert accepts(grammar, "<tool_call>ping</tool_call>")
    assert accepts(grammar, "\n<tool_call>ping\n</tool_call>\n<tool_call>ping</tool_call>")
    assert accepts(grammar, "<tool_call>ping\n\n</tool_call>")  # Ling's call without arguments
    assert not accepts(grammar, "<tool_call>ping\n\n\n</tool_call>")
    assert not accepts(grammar, "<tool_call>save\n\n<arg_key>text</arg_key><arg_value>a</arg_value></tool_call>")
    assert not accepts(grammar, "<tool_call> ping</tool_call>")


def test_refused_schemas_name_the_tool(templates_dir):
    from oaiproxy.dialects.base import StyleError

    style = GlmStyle(template(templates_dir, "GLM-4.6.jinja"))
    odd = ToolSpec("odd", "", {"type": "object", "properties": {"p": {"type": "string", "pattern": "^a+$"}}})
    with pytest.raises(StyleError) as e:
        plan(style, tools=(PING, odd))
    assert e.value.param == "tools[1].function.parameters" and "glm" in str(e.value)


def test_auto_is_lazy_on_the_opening_tag(templates_dir):
    for style, opening in ((GlmStyle(template(templates_dir, "GLM-4.7-Flash.jinja")), "<tool_call>"),
                           (GlmHy3Style(template(templates_dir, "tencent-Hy3.jinja")), "<tool_calls:opensource>")):
        auto = plan(style, tool_choice="auto")
        assert auto.grammar_lazy and auto.grammar_triggers == [{"type": "word", "value": opening}]
        assert opening in auto.preserved_tokens and style.tags.value_close in auto.preserved_tokens


# -- each template's own text, with two calls and every kind of value ------------------------


CALLS = [("save", {"text": "two\nlines < here", "count": 3, "meta": {"tag": "x"}}), ("ping", {})]


@pytest.mark.parametrize("filename", [*GLM_TEMPLATES, "tencent-Hy3.jinja"])
def test_each_templates_own_rendering_of_two_calls_reads_back(filename):
    source = (TEMPLATES / filename).read_text(encoding="utf-8")
    tpl = ChatTemplate(source, bos_token="<s>", eos_token="</s>", name=filename)
    style = detect_style(source)(tpl)
    assert isinstance(style, GlmStyle if filename != "tencent-Hy3.jinja" else GlmHy3Style)
    turn = {"role": "assistant", "content": "", "tool_calls": [
        {"id": f"call{i}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
        for i, (n, a) in enumerate(CALLS)]}
    question = {"role": "user", "content": "Save it."}
    tools = [openai_tool(NOTE), openai_tool(PING)]
    history = history_for_template([question, turn], None)
    full = tpl.render(history, tools=tools, add_generation_prompt=False)
    prompt = tpl.render(history[:1], tools=tools, add_generation_prompt=True)
    text = _strip_end(_after_generation_prompt(full, prompt))
    text = text[text.index(style.tags.opening):]
    required = plan(style)
    assert accepts(required.grammar, text), text
    _, calls = parse_every_split(lambda: plan(style, tool_choice="auto").parser, text)
    assert args_of(calls) == CALLS
