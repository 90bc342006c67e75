"""Apertus, ``<|tools_prefix|>[{NAME: ARGS}, …]<|tools_suffix|>``: parser details and grammar."""

from __future__ import annotations

import pytest

from oaiproxy.conversation.model import Conversation
from oaiproxy.dialects.apertus import ApertusParser, ApertusStyle
from oaiproxy.templating.chat_template import ChatTemplate
from tests.gbnf_oracle import accepts

from .helpers import TOOLS, args_of, parse_every_split


def test_two_calls_split_anywhere():
    text = ('Looking.<|tools_prefix|>[{"f": {"a": "}]<|tools_suffix|>", "b": [{}]}},\n{"g": {}}]<|tools_suffix|>'
            " Done.")
    content, calls = parse_every_split(ApertusParser, text)
    assert content == "Looking. Done."
    assert args_of(calls) == [("f", {"a": "}]<|tools_suffix|>", "b": [{}]}), ("g", {})]


@pytest.mark.parametrize("text", ["<|tools_prefix|> no list", "<|tools_prefix|>", "<|tools_pre"])
def test_text_that_is_not_a_call(text):
    assert parse_every_split(ApertusParser, text) == (text, [])


def test_a_call_cut_in_its_arguments_is_truncated():
    parser = ApertusParser()
    parser.feed('<|tools_prefix|>[{"write_note": {"text": "Par')
    parser.finish()
    (call,) = parser.result().tool_calls
    assert parser.truncated and call.name == "write_note"


def test_grammar_takes_one_key_per_call():
    plan = ApertusStyle(ChatTemplate.default()).plan(
        Conversation(messages=[{"role": "user", "content": "hi"}], tools=TOOLS, tool_choice="required"))
    assert accepts(plan.grammar, '<|tools_prefix|>[{"get_weather": {"city": "Paris"}}, '
                                 '{"search_web": {"query": "x"}}]<|tools_suffix|>')
    assert not accepts(plan.grammar, '<|tools_prefix|>[{"get_weather": {"city": "Paris"}, "x": 1}]<|tools_suffix|>')
    assert not accepts(plan.grammar, '<|tools_prefix|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]'
                                     '<|tools_suffix|>')
