"""The special-token section dialects (DeepSeek R1 / V3.1, Kimi K2, Solar Open) where the registry tables don't reach:
split-anywhere streaming of several calls, the model's call ids, the history ids the templates expect."""

from __future__ import annotations

import json
import re

import pytest

from oaiproxy.conversation.model import Conversation
from oaiproxy.dialects import get_style
from oaiproxy.dialects.deepseek import R1, V31
from oaiproxy.dialects.kimi import K2, kimi_id
from oaiproxy.dialects.solar import SOLAR, solar_call_id_for
from oaiproxy.dialects.token_sections import MAX_HEADER, SectionParser
from tests.gbnf_oracle import accepts

from .helpers import HISTORY, TOOLS, args_of, parse_every_split, run, template

REPRESENTATIVE = {"deepseek-r1": "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
                  "deepseek-v3.1": "deepseek-ai-DeepSeek-V3.1.jinja", "kimi-k2": "Kimi-K2-Instruct.jinja",
                  "solar-open": "upstage-Solar-Open-100B.jinja"}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def dialect(templates_dir, name: str, filename: str | None = None):
    return get_style(name)(template(templates_dir, filename or REPRESENTATIVE[name]))


def parser_for(templates_dir, name: str, **kw):
    conv = Conversation(messages=QUESTION, tools=list(TOOLS), **kw)
    style = dialect(templates_dir, name)
    return lambda: style.plan(conv).parser


def two_calls(name: str) -> str:
    samples = get_style(name).samples
    assert samples is not None
    return samples.calls([("get_weather", '{"city": "Paris"}'), ("search_web", '{"query": "a<b", "limit": 2}')])


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE))
def test_two_calls_after_text_split_anywhere(templates_dir, name):
    text = "Let me look.\n" + two_calls(name) + "\nDone."
    content, calls = parse_every_split(parser_for(templates_dir, name), text)
    assert content == "Let me look.\n\nDone."
    assert args_of(calls) == [("get_weather", {"city": "Paris"}), ("search_web", {"query": "a<b", "limit": 2})]


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE))
def test_tools_off_reads_everything_as_text(templates_dir, name):
    text = two_calls(name)
    assert parse_every_split(parser_for(templates_dir, name, tool_choice="none"), text) == (text, [])


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE))
def test_a_call_cut_in_its_header_is_truncated_text(templates_dir, name):
    text = two_calls(name)
    fmt = {"deepseek-r1": R1, "deepseek-v3.1": V31, "kimi-k2": K2, "solar-open": SOLAR}[name]
    cut = text.index(fmt.call_open) + len(fmt.call_open) + 3
    parser = parser_for(templates_dir, name)()
    events, result = run(parser, text[:cut], [])
    assert parser.truncated and result.tool_calls == [] and result.content == text[:cut]
    del events


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE))
def test_a_header_that_never_ends_is_text(templates_dir, name):
    fmt = {"deepseek-r1": R1, "deepseek-v3.1": V31, "kimi-k2": K2, "solar-open": SOLAR}[name]
    text = fmt.section_open + fmt.call_open + "x" * (MAX_HEADER + 5) + " and more"
    parser = parser_for(templates_dir, name)()
    parser.feed(text)
    parser.finish()
    assert parser.result().content == text and not parser.result().tool_calls


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE))
def test_parallel_false_allows_one_call(templates_dir, name):
    plan = dialect(templates_dir, name).plan(Conversation(messages=QUESTION, tools=list(TOOLS),
                                                          tool_choice="required", parallel_tool_calls=False))
    samples = get_style(name).samples
    assert samples is not None and plan.grammar
    assert accepts(plan.grammar, samples.calls([("get_weather", '{"city": "Paris"}')]))
    assert not accepts(plan.grammar, two_calls(name))


def test_deepseek_forms_are_not_interchangeable(templates_dir):
    r1 = dialect(templates_dir, "deepseek-r1").plan(Conversation(messages=QUESTION, tools=list(TOOLS),
                                                                 tool_choice="required")).grammar
    v31 = dialect(templates_dir, "deepseek-v3.1").plan(Conversation(messages=QUESTION, tools=list(TOOLS),
                                                                    tool_choice="required")).grammar
    assert r1 and v31
    assert accepts(r1, two_calls("deepseek-r1")) and not accepts(r1, two_calls("deepseek-v3.1"))
    assert accepts(v31, two_calls("deepseek-v3.1")) and not accepts(v31, two_calls("deepseek-r1"))


# -- Kimi: functions.NAME:IDX -------------------------------------------------------------------------


def test_kimi_ids_are_the_models_and_a_repeated_one_is_replaced(templates_dir):
    text = K2.section_text([(kimi_id("get_weather", 0), '{"city": "Paris"}'),
                            (kimi_id("get_weather", 0), '{"city": "Rome"}'),
                            (kimi_id("search_web", 7), '{"query": "x"}')])
    parser = parser_for(templates_dir, "kimi-k2")()
    parser.feed(text)
    parser.finish()
    ids = [c.id for c in parser.result().tool_calls]
    assert ids[0] == "functions.get_weather:0" and ids[2] == "functions.search_web:7"
    assert ids[1] not in ids[::2] and ids[1].startswith("call_")


def test_kimi_grammar_wants_the_tool_name_and_a_number_in_the_id(templates_dir):
    grammar = dialect(templates_dir, "kimi-k2").plan(Conversation(messages=QUESTION, tools=list(TOOLS),
                                                                  tool_choice="required")).grammar
    assert grammar
    args = '{"city": "Paris"}'
    assert accepts(grammar, K2.section_text([("functions.get_weather:12", args)]))
    for header in ("functions.get_weather:", "functions.get_weather:x", "get_weather:0", "functions.search_web:0"):
        assert not accepts(grammar, K2.section_text([(header, args)])), header


TWO_TURNS = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "client-1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "client-2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
    {"role": "tool", "tool_call_id": "client-1", "content": "sunny"},
    {"role": "tool", "tool_call_id": "client-2", "content": "rainy"},
    {"role": "user", "content": "And Berlin?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "client-3", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Berlin"}'}}]},
    {"role": "tool", "tool_call_id": "client-3", "content": "windy"},
]


@pytest.mark.parametrize("filename,third", [("Kimi-K2-Instruct.jinja", 2), ("Kimi-K2-Thinking.jinja", 2),
                                            ("moonshotai-Kimi-K2.jinja", 0)])
def test_kimi_history_gets_the_ids_its_template_writes(templates_dir, filename, third):
    """Instruct and Thinking number calls over the conversation, moonshotai's per turn (and prints the
    result's own tool_call_id): every result must name the id its call was written with."""
    prompt = dialect(templates_dir, "kimi-k2", filename).plan(
        Conversation(messages=TWO_TURNS, tools=list(TOOLS))).prompt
    for index, result in ((0, "sunny"), (1, "rainy"), (third, "windy")):
        own = kimi_id("get_weather", index)
        assert f"{K2.call_open}{own}{K2.args_open}" in prompt
        # (moonshotai's template writes a backslash and an n, not a newline)
        assert re.search(rf"## Return of {re.escape(own)}(\n|\\n){result}", prompt), prompt[-800:]
    assert "client-" not in prompt


# -- Solar Open: 10-character ids ---------------------------------------------------------------------


def test_solar_ids_are_the_models_when_well_formed(templates_dir):
    text = SOLAR.section_text([("a1b2c3d4e5<|tool_call:name|>get_weather", '{"city": "Paris"}'),
                               ("a1b2c3d4e5<|tool_call:name|>get_weather", '{"city": "Rome"}'),
                               ("NOT-AN-ID<|tool_call:name|>search_web", '{"query": "x"}')])
    parser = parser_for(templates_dir, "solar-open")()
    parser.feed(text)
    parser.finish()
    calls = parser.result().tool_calls
    assert [c.name for c in calls] == ["get_weather", "get_weather", "search_web"]
    assert calls[0].id == "a1b2c3d4e5"
    for call in calls[1:]:
        assert len(call.id) == 10 and call.id.isalnum() and call.id == call.id.lower() and call.id != "a1b2c3d4e5"


def test_solar_history_ids_are_mapped_to_its_shape_and_results_find_their_call(templates_dir):
    prompt = dialect(templates_dir, "solar-open").plan(Conversation(messages=HISTORY, tools=list(TOOLS))).prompt
    mapped = solar_call_id_for("call_abc123")
    assert len(mapped) == 10 and mapped == solar_call_id_for("call_abc123") and solar_call_id_for(mapped) == mapped
    assert f"<|tool_call:begin|>{mapped}<|tool_call:name|>get_weather<|tool_call:args|>" in prompt
    # the template finds the result's tool name through the id
    assert f"<|tool_response:begin|>{mapped}<|tool_response:name|>get_weather<|tool_response:result|>" in prompt


def test_solar_grammar_wants_a_ten_character_id(templates_dir):
    grammar = dialect(templates_dir, "solar-open").plan(Conversation(messages=QUESTION, tools=list(TOOLS),
                                                                     tool_choice="required")).grammar
    assert grammar
    args = json.dumps({"city": "Paris"})
    assert accepts(grammar, SOLAR.section_text([("0123456789<|tool_call:name|>get_weather", args)]))
    for call_id in ("012345678", "01234567890", "ABCDEFGHIJ"):
        assert not accepts(grammar, SOLAR.section_text([(f"{call_id}<|tool_call:name|>get_weather", args)]))


def test_section_parser_needs_no_style():
    parser = SectionParser(V31, lambda header: (header, None))
    parser.feed(V31.section_text([("f", "{}")]))
    parser.finish()
    assert [(c.name, c.arguments) for c in parser.result().tool_calls] == [("f", "{}")]
