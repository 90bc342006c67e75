"""Harmony (gpt-oss, LLM-jp 4.1): both header forms, several messages, text that is no harmony, split anywhere."""

from __future__ import annotations

import json
import re

import pytest

from oaiproxy.conversation.model import Conversation, ToolSpec
from oaiproxy.dialects.harmony import HarmonyParser, HarmonyStyle, call_text
from tests.gbnf_oracle import accepts

from .helpers import SEARCH, WEATHER, args_of, parse_every_split, template

GPT_OSS = "openai-gpt-oss-120b.jinja"
LLM_JP = "llm-jp-llm-jp-4.1-8b-thinking.jinja"
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
NEXT = "<|end|><|start|>assistant"
ROLE_FORM = ' to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}'
CHANNEL_FORM = call_text("get_weather", '{"city": "Paris"}')


def parser(calls: bool = True):
    return lambda: HarmonyParser(calls=calls)


def style(templates_dir, name: str = GPT_OSS) -> HarmonyStyle:
    return HarmonyStyle(template(templates_dir, name))


@pytest.mark.parametrize("text", [
    CHANNEL_FORM + "<|call|>",
    CHANNEL_FORM,  # the stop word <|call|> is not in llama-server's text
    ROLE_FORM + "<|call|>",
    ' to=functions.get_weather<|channel|>commentary <|constrain|> json<|message|>{"city": "Paris"}<|call|>',
    '<|channel|>commentary to=functions.get_weather<|message|> {"city": "Paris"} <|call|>',
    '<|channel|>analysis to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>',
])
def test_one_call_in_every_header_form(text):
    content, calls = parse_every_split(parser(), text)
    assert content == "" and args_of(calls) == [("get_weather", {"city": "Paris"})]


def test_two_calls_as_two_messages_with_escapes_in_the_arguments():
    args = {"query": 'say "hi" <|call|> \\ \n ünï', "limit": 2}
    text = (CHANNEL_FORM + NEXT + call_text("search_web", json.dumps(args)) + "<|call|>")
    content, calls = parse_every_split(parser(), text)
    assert content == ""
    assert args_of(calls) == [("get_weather", {"city": "Paris"}), ("search_web", args)]


@pytest.mark.parametrize("text,content", [
    ("<|channel|>final<|message|>It is sunny.<|return|>", "It is sunny."),
    ("<|channel|>final <|constrain|>json<|message|>{\"t\": 21}<|end|>", '{"t": 21}'),
    ("<|channel|>commentary<|message|>Checking.<|end|><|start|>assistant<|channel|>final<|message|>Done.",
     "Checking.Done."),
    ("<|channel|>analysis<|message|>secret <|channel|> thoughts<|end|><|start|>assistant<|channel|>final<|message|>Hi",
     "Hi"),
    ("Plain text from a model that writes no harmony.", "Plain text from a model that writes no harmony."),
    (" to be or not to be", " to be or not to be"),
    ("I want to", "I want to"),
    ("<|channel|>weird<|message|>x", "<|channel|>weird<|message|>x"),
    ("<|channel|>final<|message|>a <|b|> c <|", "a <|b|> c <|"),
    ("", ""),
])
def test_text_that_is_not_a_call(text, content):
    assert parse_every_split(parser(), text) == (content, [])


def test_a_call_after_free_text_that_woke_the_lazy_grammar():
    text = "Let me look.<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Oslo\"}"
    content, calls = parse_every_split(parser(), text)
    assert content == "Let me look." and args_of(calls) == [("get_weather", {"city": "Oslo"})]


def test_tools_off_reads_a_call_as_text():
    content, calls = parse_every_split(parser(calls=False), CHANNEL_FORM + "<|call|>")
    assert calls == [] and content == CHANNEL_FORM


@pytest.mark.parametrize("text,content", [
    ('<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Pa', ""),
    ("<|channel|>commentary to=functions.get_wea", ""),
])
def test_a_cut_call_is_truncated(text, content):
    p = HarmonyParser()
    p.feed(text)
    p.finish()
    assert p.truncated and (p.result().content or "") == content


def test_required_grammar_takes_both_header_forms_and_only_the_tools(templates_dir):
    plan = style(templates_dir).plan(Conversation(messages=ASK, tools=[WEATHER, SEARCH], tool_choice="required"))
    assert plan.grammar and not plan.grammar_lazy
    for good in (CHANNEL_FORM, CHANNEL_FORM + "<|call|>", ROLE_FORM + "<|call|>",
                 ROLE_FORM.replace(" json", " <|constrain|> json"), CHANNEL_FORM + NEXT + ROLE_FORM + "<|call|>"):
        assert accepts(plan.grammar, good), good
    for bad in ("<|channel|>final<|message|>Hi", CHANNEL_FORM.replace("get_weather", "get_wether"),
                CHANNEL_FORM + "<|call|>" + NEXT + CHANNEL_FORM, CHANNEL_FORM.replace('"Paris"', "Paris"),
                "<|channel|>commentary<|message|>Hi<|end|>" + NEXT + CHANNEL_FORM):
        assert not accepts(plan.grammar, bad), bad
    single = style(templates_dir).plan(Conversation(messages=ASK, tools=[WEATHER], tool_choice="required",
                                                    parallel_tool_calls=False))
    assert accepts(single.grammar, CHANNEL_FORM) and not accepts(single.grammar, CHANNEL_FORM + NEXT + CHANNEL_FORM)


def test_lazy_triggers_wake_on_either_header_form(templates_dir):
    plan = style(templates_dir).plan(Conversation(messages=ASK, tools=[WEATHER]))
    assert plan.grammar_lazy
    word = next(t["value"] for t in plan.grammar_triggers if t["type"] == "word")
    full = re.compile(next(t["value"] for t in plan.grammar_triggers if t["type"] == "pattern_full"))
    assert word in plan.preserved_tokens and "<|call|>" in plan.stop and "<|return|>" in plan.stop
    for text in (ROLE_FORM, "<|channel|>commentary<|message|>Checking.<|end|><|start|>assistant" + ROLE_FORM):
        found = full.fullmatch(text)
        assert found and accepts(plan.grammar, text[found.start(1):]), text
    assert not full.fullmatch("I want to=functions.get_weather")
    assert accepts(plan.grammar, CHANNEL_FORM[CHANNEL_FORM.index(word):])


def test_none_with_a_response_format_is_the_final_channel(templates_dir):
    from oaiproxy.conversation.model import ResponseFormat

    plan = style(templates_dir).plan(Conversation(messages=ASK, tools=[WEATHER], tool_choice="none",
                                                  response_format=ResponseFormat("json_object")))
    assert accepts(plan.grammar, '<|channel|>final<|message|>{"a": 1}')
    plan.parser.feed('<|channel|>final<|message|>{"a": 1}')
    plan.parser.finish()
    assert plan.parser.result().content == '{"a": 1}'


@pytest.mark.parametrize("name", [GPT_OSS, LLM_JP])
def test_parallel_calls_in_the_history_each_with_its_result(templates_dir, name):
    history = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "search_web", "arguments": '{"query": "news"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "no news"},
    ]
    prompt = style(templates_dir, name).plan(Conversation(messages=history, tools=[WEATHER, SEARCH])).prompt
    spots = [prompt.find(s) for s in ("to=functions.get_weather<|channel|>", "functions.get_weather to=assistant",
                                      "to=functions.search_web<|channel|>", "functions.search_web to=assistant")]
    if name == LLM_JP:  # it writes the parallel calls together, then their results in order
        spots = [spots[0], spots[2], spots[1], spots[3]]
    assert -1 not in spots and spots == sorted(spots), prompt[-900:]
    assert '"sunny"' in prompt and '"no news"' in prompt
    assert prompt.endswith("<|start|>assistant")


def test_a_schema_the_converter_refuses_names_the_tool(templates_dir):
    from oaiproxy.dialects.base import StyleError

    odd = ToolSpec("odd", "", {"type": "object", "properties": {"x": {"not": {}}}})
    with pytest.raises(StyleError) as e:
        style(templates_dir).plan(Conversation(messages=ASK, tools=[WEATHER, odd], tool_choice="required"))
    assert e.value.param == "tools[1].function.parameters"
