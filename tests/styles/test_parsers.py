"""Parser details per dialect, each output checked whole, split at every point and one character at a time."""

from __future__ import annotations

import json

import pytest

from oaiproxy.conversation.model import Conversation, NamedToolChoice, ToolSpec
from oaiproxy.dialects import get_style
from oaiproxy.dialects.functionary import FunctionaryV32Parser
from oaiproxy.dialects.generic import GenericParser, GenericStyle
from oaiproxy.dialects.hermes import HermesParser
from oaiproxy.dialects.llama3 import Llama3Parser, Llama3Style, json_form_start
from oaiproxy.dialects.mistral import MistralParser
from oaiproxy.dialects.registry import sampled_styles
from oaiproxy.templating.chat_template import ChatTemplate
from tests.gbnf_oracle import accepts

from .helpers import args_of, parse_every_split, template

# -- every dialect's own sample outputs ------------------------------------------------------

SAMPLE_OUTPUTS = [(cls.name, i, out) for cls in sampled_styles() if cls.samples is not None
                  for i, out in enumerate(cls.samples.outputs)]


@pytest.mark.parametrize("style,i,sample", SAMPLE_OUTPUTS, ids=[f"{s}-{i}" for s, i, _ in SAMPLE_OUTPUTS])
def test_sample_outputs_parse_to_their_calls(templates_dir, style, i, sample):
    """What each dialect says its outputs mean, read by the parser of an ``auto`` plan on its representative
    template (tools with the sample's call names, any arguments)."""
    cls = get_style(style)
    assert cls.samples is not None
    name = cls.samples.representative
    tpl = ChatTemplate.default() if name == "default" else template(templates_dir, name)
    names = [n for n, _ in sample.calls] or ["f"]
    tools = [ToolSpec(n, "", {"type": "object"}) for n in dict.fromkeys(names)]
    conversation = Conversation(messages=[{"role": "user", "content": "hi"}], tools=tools)
    content, calls = parse_every_split(lambda: cls(tpl).plan(conversation).parser, sample.text)
    assert content == sample.content
    assert args_of(calls) == list(sample.calls)


# -- text that is not a call stays text, whole and once ------------------------------------


@pytest.mark.parametrize("text", [
    "Plain answer.",
    "A tag that never completes: <tool_c",
    "Angle brackets < and > and <tool> are fine",
    "<tool_call> is followed by no JSON at all",
    "",
])
def test_hermes_text_that_is_not_a_call(text):
    content, calls = parse_every_split(lambda: HermesParser(), text)
    assert content == text and calls == []


def test_hermes_tools_off_reads_everything_as_text():
    text = '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    assert parse_every_split(lambda: HermesParser(enabled=False), text) == (text, [])


def test_hermes_key_order_and_missing_arguments():
    text = '<tool_call>{"arguments": {"a": "x\\"y"}, "name": "f"}</tool_call><tool_call>{"name": "g"}</tool_call>'
    content, calls = parse_every_split(lambda: HermesParser(), text)
    assert args_of(calls) == [("f", {"a": 'x"y'}), ("g", {})]


# -- Llama 3 ------------------------------------------------------------------------------------


def llama(**kw):
    kw.setdefault("enabled", True)
    kw.setdefault("json_form", True)
    return lambda: Llama3Parser(**kw)


@pytest.mark.parametrize("text,expected", [
    ('{"name": "f", "parameters": {"a": 1}}', [("f", {"a": 1})]),
    ('\n { "name" : "f", "parameters": {}}', [("f", {})]),
    ('{"name": "f", "arguments": {"a": [1]}}', [("f", {"a": [1]})]),
    ('<function=f>{"a": 1}</function><function=g>{}</function>', [("f", {"a": 1}), ("g", {})]),
])
def test_llama3_call_forms(text, expected):
    content, calls = parse_every_split(llama(), text)
    assert content.strip() == "" and args_of(calls) == expected


@pytest.mark.parametrize("text", [
    'Sure: {"name": "f", "parameters": {}}',  # the bare JSON call only opens the answer
    '{   "name": "f", "parameters": {}}',  # more whitespace than the trigger pattern allows
    '{"names": 1}',
    "<function=not a name>{}</function>",
])
def test_llama3_text_that_is_not_a_call(text):
    assert parse_every_split(llama(), text) == (text, [])


def test_llama3_json_form_prefix_decisions():
    assert json_form_start("  {") is None
    assert json_form_start('{"na') is None
    assert json_form_start('{ "name"  :') == 0
    assert json_form_start('{"nope"') is False
    assert json_form_start("Hello") is False


def test_llama3_builtin_calls_become_json_arguments():
    parser = llama(call_builtins=("brave_search", "wolfram_alpha"), code_tool="ipython")
    content, calls = parse_every_split(parser, '<|python_tag|>brave_search.call(query="weather \\"Paris\\"", n=3)')
    assert args_of(calls) == [("brave_search", {"query": 'weather "Paris"', "n": 3})]
    content, calls = parse_every_split(parser, '<|python_tag|>import math\nprint(math.pi, "\\n")')
    assert args_of(calls) == [("ipython", {"code": 'import math\nprint(math.pi, "\\n")'})]


@pytest.mark.parametrize("text", ["<|python_tag|>print(1)", '<|python_tag|>{"name": "f", "parameters": {}}'])
def test_llama3_python_tag_without_builtins_is_text(text):
    assert parse_every_split(llama(), text) == (text, [])


def test_llama3_builtin_grammar_and_template_variables(templates_dir):
    brave = ToolSpec("brave_search", "Search", {"type": "object", "properties": {"query": {"type": "string"}},
                                                "required": ["query"]})
    code = ToolSpec("ipython", "Run Python", {"type": "object", "properties": {"code": {"type": "string"}},
                                              "required": ["code"]})
    style = Llama3Style(template(templates_dir, "meta-llama-Llama-3.1-8B-Instruct.jinja"))
    plan = style.plan(Conversation(messages=[{"role": "user", "content": "hi"}], tools=[brave, code],
                                   tool_choice="required"))
    assert accepts(plan.grammar, '<|python_tag|>brave_search.call(query="x")')
    assert accepts(plan.grammar, "<|python_tag|>print('hi')")
    assert not accepts(plan.grammar, '<|python_tag|>brave_search.call(q="x")')
    assert "Tools: brave_search" in plan.prompt  # the template's builtin_tools line
    auto = style.plan(Conversation(messages=[{"role": "user", "content": "hi"}], tools=[brave, code]))
    assert auto.grammar_triggers == [{"type": "word", "value": "<|python_tag|>"}]


# -- Functionary v3.2 -------------------------------------------------------------------------


def functionary(names=("get_weather", "get_time")):
    return lambda: FunctionaryV32Parser(list(names))


@pytest.mark.parametrize("text,content,expected", [
    ("all\nHello!", "Hello!", []),
    ('get_weather\n{"city": "Paris"}', "", [("get_weather", {"city": "Paris"})]),
    ('all\nChecking.>>>get_weather\n{"city": "Paris"}>>>get_time\n{}', "Checking.",
     [("get_weather", {"city": "Paris"}), ("get_time", {})]),
    (">>>all\nHi", "Hi", []),  # a prompt that did not end with >>> (another template under --style)
    ("unknown_tool\n{}", "unknown_tool\n{}", []),
    ("all\na >>> b", "a >>> b", []),
])
def test_functionary_v32_recipients(text, content, expected):
    got_content, calls = parse_every_split(functionary(), text)
    assert got_content == content and args_of(calls) == expected


def test_functionary_v32_tools_off_still_strips_the_text_recipient():
    assert parse_every_split(functionary(()), 'all\nget_weather\n{}') == ('get_weather\n{}', [])


# -- Mistral Nemo ---------------------------------------------------------------------------


def test_mistral_keeps_the_models_ids():
    text = ('Let me see.[TOOL_CALLS][{"name": "f", "arguments": {"a": 1}, "id": "a1B2c3D4e"}, '
            '{"name": "g", "arguments": {}, "id": "Z9y8X7w6v"}]')
    parser = MistralParser()
    parser.feed(text)
    parser.finish()
    result = parser.result()
    assert [c.id for c in result.tool_calls] == ["a1B2c3D4e", "Z9y8X7w6v"]
    content, calls = parse_every_split(MistralParser, text)
    assert content == "Let me see." and args_of(calls) == [("f", {"a": 1}), ("g", {})]


def test_mistral_without_an_id_gets_a_nine_character_one():
    parser = MistralParser()
    parser.feed('[TOOL_CALLS][{"name": "f", "arguments": {}}]')
    parser.finish()
    (call,) = parser.result().tool_calls
    assert len(call.id) == 9 and call.id.isalnum()


# -- generic -------------------------------------------------------------------------------


@pytest.mark.parametrize("result", ["It is sunny.\nWarm: 21°C, \"nice\" \\ ok 😀", {"temp": 21, "list": [1, 2]}, 42,
                                    None])
def test_generic_result_becomes_content(result):
    text = json.dumps({"thought_about_next_step_only": "Answer now.", "next_step": {"result": result}})
    content, calls = parse_every_split(GenericParser, text)
    assert calls == []
    expected = result if isinstance(result, str) else json.dumps(result)
    assert content == expected


def test_generic_calls_and_thought():
    text = json.dumps({"thought_about_next_step_only": "Two lookups.", "next_step": {"tool_calls": [
        {"name": "f", "arguments": {"a": "b"}}, {"name": "g", "arguments": {}}]}})
    content, calls = parse_every_split(GenericParser, text)
    assert content == "" and args_of(calls) == [("f", {"a": "b"}), ("g", {})]
    parser = GenericParser()
    parser.feed(text)
    parser.finish()
    assert parser.thought == "Two lookups."


def test_generic_json_schema_variant_describes_tools_as_schema():
    from oaiproxy.dialects import get_style

    tool = ToolSpec("f", "Do f", {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]})
    conv = Conversation(messages=[{"role": "user", "content": "hi"}], tools=[tool], tool_choice=NamedToolChoice("f"))
    ts = GenericStyle(ChatTemplate.default()).plan(conv).prompt
    js = get_style("generic-json-schema")(ChatTemplate.default()).plan(conv).prompt
    assert "function f(args: {" in ts and "a: string;" in ts
    assert '"properties": {"a": {"type": "string"}}' in js


def test_mistral_repeated_ids_are_made_distinct():
    # The grammar cannot make the model's ids distinct; the parser must, or validation refuses the answer.
    text = ('[TOOL_CALLS][{"name": "f", "arguments": {}, "id": "a1B2c3D4e"}, '
            '{"name": "g", "arguments": {}, "id": "a1B2c3D4e"}]')
    parser = MistralParser()
    parser.feed(text)
    parser.finish()
    first, second = parser.result().tool_calls
    assert first.id == "a1B2c3D4e" and second.id != first.id and len(second.id) == 9 and second.id.isalnum()


def test_llama3_code_builtin_only_for_a_schema_that_takes_raw_code(templates_dir):
    # Raw code becomes {key: code}; a code tool whose schema wants more must be called as an ordinary function.
    rich = ToolSpec("python", "Run code", {"type": "object", "properties": {
        "code": {"type": "string"}, "timeout": {"type": "integer"}}, "required": ["code", "timeout"]})
    style = Llama3Style(template(templates_dir, "meta-llama-Llama-3.1-8B-Instruct.jinja"))
    plan = style.plan(Conversation(messages=[{"role": "user", "content": "hi"}], tools=[rich],
                                   tool_choice="required"))
    assert not accepts(plan.grammar, "<|python_tag|>print('hi')")
    assert accepts(plan.grammar, '{"name": "python", "parameters": {"code": "print(1)", "timeout": 5}}')
    constrained = ToolSpec("ipython", "Run code", {"type": "object", "properties": {
        "code": {"type": "string", "maxLength": 5}}, "required": ["code"]})
    plan = style.plan(Conversation(messages=[{"role": "user", "content": "hi"}], tools=[constrained],
                                   tool_choice="required"))
    assert not accepts(plan.grammar, "<|python_tag|>print('a long line of code')")


def test_llama3_builtin_call_arguments_follow_the_enforced_schema(templates_dir):
    # A nested object in a builtin's keyword argument is closed in the check by default: the grammar must agree.
    brave = ToolSpec("brave_search", "Search", {"type": "object", "properties": {
        "query": {"type": "string"},
        "filters": {"type": "object", "properties": {"site": {"type": "string"}}}}, "required": ["query"]})
    style = Llama3Style(template(templates_dir, "meta-llama-Llama-3.1-8B-Instruct.jinja"))
    plan = style.plan(Conversation(messages=[{"role": "user", "content": "hi"}], tools=[brave],
                                   tool_choice="required"))
    assert accepts(plan.grammar, '<|python_tag|>brave_search.call(query="x", filters={"site": "a"})')
    assert not accepts(plan.grammar, '<|python_tag|>brave_search.call(query="x", filters={"other": 1})')
