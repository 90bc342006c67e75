"""The named-element XML call formats (xml_invoke.py, seed_oss.py): each tag set's grammar and parser in detail.

The registry-driven tables (test_dialects, test_parsers) check every style on its
samples; these check what they cannot: values that look like markup, the value
spellings each template writes (DSML's string attribute, MiniCPM5's CDATA,
Seed-OSS's Python literals), the ATEM header, and refusals that name the field.
"""

from __future__ import annotations

import json

import pytest

from oaiproxy.conversation.model import Conversation, ToolSpec
from oaiproxy.dialects import detect_style, get_style
from oaiproxy.dialects.base import StyleError, ToolCallDelta
from oaiproxy.dialects.seed_oss import SEED
from oaiproxy.dialects.xml_invoke import (
    ATEM,
    DSML_FUNCTION_CALLS,
    DSML_TOOL_CALLS,
    MINICPM,
    MINIMAX_M2,
    MINIMAX_M3,
    MINIMAX_NS,
    XmlCallsParser,
    XmlFormat,
)
from tests.gbnf_oracle import accepts

from .helpers import args_of, parse_every_split, template

FORMATS: dict[str, XmlFormat] = {
    "minimax-m2": MINIMAX_M2, "minimax-m3": MINIMAX_M3, "deepseek-v3.2": DSML_FUNCTION_CALLS,
    "deepseek-v4": DSML_TOOL_CALLS, "muse-atem": ATEM, "minicpm5": MINICPM, "seed-oss": SEED}

NOTE = ToolSpec("note", "Save a note", {
    "type": "object",
    "properties": {"text": {"type": "string"}, "count": {"type": "integer"}, "urgent": {"type": "boolean"}},
    "required": ["text"], "additionalProperties": False})
TAGS = ToolSpec("tag", "Tag a note", {
    "type": "object", "properties": {"label": {"type": "string", "maxLength": 8}}, "required": ["label"],
    "additionalProperties": False})
TOOLS = [NOTE, TAGS]
ASK = [{"role": "user", "content": "Take a note."}]


def _style(name: str, templates_dir):
    cls = get_style(name)
    assert cls.samples is not None
    return cls(template(templates_dir, cls.samples.representative))


def _plan(name: str, templates_dir, **kw):
    kw.setdefault("messages", ASK)
    kw.setdefault("tools", TOOLS)
    return _style(name, templates_dir).plan(Conversation(**kw))


def _parser(fmt: XmlFormat, enabled: bool = True) -> XmlCallsParser:
    return XmlCallsParser(fmt, enabled, {"note": frozenset({"text"}), "tag": frozenset({"label"})})


@pytest.mark.parametrize("name", FORMATS)
def test_two_calls_with_markup_in_a_value_split_anywhere(templates_dir, name):
    """The grammar admits a string with '<' (and '>' and a quote) as the template writes it; the parser reads
    both calls back, however the text is split."""
    fmt = FORMATS[name]
    calls = [("note", json.dumps({"text": 'x < y and "a>b"', "count": 3, "urgent": True})),
             ("tag", json.dumps({"label": "todo"}))]
    text = fmt.calls_text(calls)
    required = _plan(name, templates_dir, tool_choice="required")
    header = " to=note<|message|>" if fmt.header else ""
    assert accepts(required.grammar, header + text), text
    content, parsed = parse_every_split(lambda: _plan(name, templates_dir).parser, "Let me note it.\n" + text)
    assert content.strip() == "Let me note it."
    assert args_of(parsed) == [("note", {"text": 'x < y and "a>b"', "count": 3, "urgent": True}),
                               ("tag", {"label": "todo"})]


@pytest.mark.parametrize("name", FORMATS)
def test_a_value_cannot_hold_its_end_tag(templates_dir, name):
    """A free string is any text without the text that ends the value: with it, the call is refused."""
    fmt = FORMATS[name]
    if fmt.cdata:
        pytest.skip("MiniCPM5 writes such a string in CDATA (test_minicpm5_cdata)")
    good = fmt.calls_text([("note", json.dumps({"text": "a < b"}))])
    bad = fmt.calls_text([("note", json.dumps({"text": f"a{fmt.value_end}b"}))])
    grammar = _plan(name, templates_dir, tool_choice="required").grammar
    header = " to=note<|message|>" if fmt.header else ""
    assert accepts(grammar, header + good)
    assert not accepts(grammar, header + bad)


@pytest.mark.parametrize("name", FORMATS)
def test_tools_off_reads_everything_as_text(name):
    fmt = FORMATS[name]
    text = fmt.calls_text([("note", '{"text": "hi"}')])
    assert parse_every_split(lambda: _parser(fmt, enabled=False), text) == (text, [])


@pytest.mark.parametrize("name", FORMATS)
def test_a_cut_call_keeps_the_parameters_it_completed(name):
    fmt = FORMATS[name]
    text = fmt.calls_text([("note", '{"text": "hello", "count": 2}')])
    cut = text.index("2", text.index("hello"))
    parser = _parser(fmt)
    parser.feed(text[:cut])
    parser.finish()
    [call] = parser.result().tool_calls
    assert parser.truncated and call.name == "note" and call.arguments == '{"text": "hello"'


@pytest.mark.parametrize("name", FORMATS)
def test_text_after_the_call_head_breaks_the_call(name):
    """A complete call head followed by something else: the call was started and is reported as cut (validation
    refuses its empty arguments); the rest is text."""
    fmt = FORMATS[name]
    text = f"{fmt.section_open}{fmt.call_open}note{fmt.call_name_end}oops, no parameter"
    parser = _parser(fmt)
    parser.feed(text)
    parser.finish()
    result = parser.result()
    assert parser.truncated and [c.name for c in result.tool_calls] == ["note"]
    assert result.tool_calls[0].arguments == ""
    assert "oops, no parameter" in (result.content or "")


def test_dsml_string_attribute_says_how_a_value_reads(templates_dir):
    """string="true" reads the value raw and string="false" as JSON, whatever the tool's schema says; the grammar
    writes the attribute from the schema."""
    d = "｜DSML｜"
    text = (f'<{d}function_calls>\n<{d}invoke name="note">\n<{d}parameter name="text" string="false">"quoted"'
            f'</{d}parameter>\n<{d}parameter name="count" string="true">7</{d}parameter>\n</{d}invoke>\n'
            f'</{d}function_calls>')
    assert args_of(parse_every_split(lambda: _parser(DSML_FUNCTION_CALLS), text)[1]) == [
        ("note", {"text": "quoted", "count": "7"})]
    grammar = _plan("deepseek-v3.2", templates_dir, tool_choice="required").grammar
    assert accepts(grammar, DSML_FUNCTION_CALLS.calls_text([("note", '{"text": "7", "count": 7}')]))
    assert not accepts(grammar, text)  # the attributes contradict the schema


def test_minicpm5_cdata(templates_dir):
    """MiniCPM5's template puts a string with '<', '&' or a newline in CDATA; the grammar writes exactly that
    (a free string is plain text without them, or CDATA), and the parser unwraps it, '</param>' inside included."""
    value = "a < b</param> & c\nd"
    text = MINICPM.calls_text([("note", json.dumps({"text": value}))])
    assert "<![CDATA[" in text
    grammar = _plan("minicpm5", templates_dir, tool_choice="required").grammar
    assert accepts(grammar, text)
    assert not accepts(grammar, '<function name="note"><param name="text">a < b</param></function>')
    assert not accepts(grammar, '<function name="note"><param name="text"><![CDATA[a]]>b]]></param></function>')
    assert args_of(parse_every_split(lambda: _parser(MINICPM), text)[1]) == [("note", {"text": value})]


def test_minicpm5_renders_a_past_call_as_the_grammar_writes_it(templates_dir):
    history = [*ASK, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "note", "arguments": json.dumps({"text": "a<b"})}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "saved"}]
    prompt = _plan("minicpm5", templates_dir, messages=history).prompt
    assert MINICPM.call_text("note", json.dumps({"text": "a<b"})) in prompt


def test_seed_oss_reads_python_values_and_is_not_qwen3_coder(templates_dir):
    text = ("<seed:tool_call>\n<function=note>\n<parameter=text>True</parameter>\n<parameter=count>5</parameter>\n"
            "<parameter=urgent>False</parameter>\n</function>\n</seed:tool_call>")
    assert args_of(parse_every_split(lambda: _parser(SEED), text)[1]) == [
        ("note", {"text": "True", "count": 5, "urgent": False})]
    source = (templates_dir / "ByteDance-Seed-OSS.jinja").read_text(encoding="utf-8")
    assert detect_style(source).name == "seed-oss"


def test_seed_oss_renders_tools_without_properties(templates_dir):
    """The template reads every tool's parameters.properties: a tool that declares none still renders."""
    plan = _plan("seed-oss", templates_dir, tools=[ToolSpec("ping", "Ping", {"type": "object"})])
    assert "def ping(" in plan.prompt


def test_atem_header(templates_dir):
    """The muse answer opens with to=RECIPIENT<|message|>: forced calls write it, the parser drops it, and a
    header for the user leaves the answer as content."""
    required = _plan("muse-atem", templates_dir, tool_choice="required").grammar
    call = ATEM.calls_text([("tag", '{"label": "x"}')])
    assert accepts(required, " to=tag<|message|>" + call)
    assert not accepts(required, call) and not accepts(required, " to=user<|message|>" + call)
    assert parse_every_split(lambda: _parser(ATEM), " to=user<|message|>Hello.") == ("Hello.", [])
    assert parse_every_split(lambda: _parser(ATEM), " together we <|message|>") == (" together we <|message|>", [])
    assert args_of(parse_every_split(lambda: _parser(ATEM), " to=tag<|message|>" + call)[1]) == [
        ("tag", {"label": "x"})]


def test_minimax_m3_refuses_nested_values_naming_the_field(templates_dir):
    nested = ToolSpec("put", "", {"type": "object", "properties": {"items": {"type": "array"}}})
    with pytest.raises(StyleError) as e:
        _plan("minimax-m3", templates_dir, tools=[NOTE, nested], tool_choice="required")
    assert e.value.param == "tools[1].function.parameters" and "'items'" in str(e.value)
    # MiniMax-M2 writes the same array as JSON
    assert _plan("minimax-m2", templates_dir, tools=[NOTE, nested], tool_choice="required").grammar


def test_minimax_m3_value_cannot_hold_the_separator(templates_dir):
    grammar = _plan("minimax-m3", templates_dir, tool_choice="required").grammar
    assert accepts(grammar, MINIMAX_M3.calls_text([("note", json.dumps({"text": "]<]minimax[x"}))]))
    assert not accepts(grammar, MINIMAX_M3.calls_text([("note", json.dumps({"text": f"a{MINIMAX_NS}b"}))]))


@pytest.mark.parametrize("name", FORMATS)
def test_auto_is_lazy_on_the_formats_own_opening(templates_dir, name):
    plan = _plan(name, templates_dir)
    fmt = FORMATS[name]
    assert plan.grammar_lazy and plan.grammar_triggers == [{"type": "word", "value": fmt.trigger}]
    assert fmt.trigger in plan.preserved_tokens
    single = _plan(name, templates_dir, tool_choice="required", parallel_tool_calls=False).grammar
    header = " to=note<|message|>" if fmt.header else ""
    one = fmt.calls_text([("tag", '{"label": "a"}')])
    two = fmt.calls_text([("tag", '{"label": "a"}'), ("tag", '{"label": "b"}')])
    assert accepts(single, header + one) and not accepts(single, header + two)


@pytest.mark.parametrize("name", FORMATS)
def test_raw_strings_stream_as_they_are_written(name):
    """A string parameter's text is sent before its end tag arrives (only a tail that may begin it waits); a
    JSON value is sent whole once it ends."""
    fmt = FORMATS[name]
    text = fmt.calls_text([("note", '{"count": 4, "text": "hello world"}')])
    parser = _parser(fmt)
    head = text[: text.index("world") + 3]
    sent = "".join(e.arguments for e in parser.feed(head) if isinstance(e, ToolCallDelta))
    assert sent == '{"count": 4, "text": "hello wor'
    parser.feed(text[len(head):])
    parser.finish()
    assert json.loads(parser.result().tool_calls[0].arguments) == {"count": 4, "text": "hello world"}
