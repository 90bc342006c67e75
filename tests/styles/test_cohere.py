"""Cohere's action lists (Command R7B / Command A, and Command R+'s ``Action:`` block): parser and grammar."""

from __future__ import annotations

import pytest

from oaiproxy.conversation.model import Conversation
from oaiproxy.dialects.cohere import ACTION, FENCE_CLOSE, FENCE_OPEN, CohereParser, CohereStyle, CommandRPlusStyle
from oaiproxy.templating.chat_template import ChatTemplate
from tests.gbnf_oracle import accepts

from .helpers import TOOLS, args_of, parse_every_split


def plus():
    return CohereParser(opening=ACTION, fence=FENCE_OPEN, closing=FENCE_CLOSE)


def test_two_actions_split_anywhere_and_the_models_numbers_are_not_ids():
    text = ('Plan.<|START_ACTION|>[\n    {"tool_call_id": "0", "tool_name": "f", "parameters": {"a": "]"}},\n'
            '    {"tool_name": "g", "tool_call_id": "0", "parameters": {}}\n]<|END_ACTION|>')
    content, calls = parse_every_split(CohereParser, text)
    assert content == "Plan."
    assert args_of(calls) == [("f", {"a": "]"}), ("g", {})]
    parser = CohereParser()
    parser.feed(text)
    parser.finish()
    ids = [c.id for c in parser.result().tool_calls]
    assert all(i.startswith("call_") for i in ids) and len(set(ids)) == 2


def test_command_r_plus_block_split_anywhere():
    text = 'Searching.\nAction: ```json\n[{"tool_name": "f", "parameters": {"q": "```"}}]\n```'
    content, calls = parse_every_split(plus, text)
    assert content == "Searching.\n" and args_of(calls) == [("f", {"q": "```"})]


@pytest.mark.parametrize("text", ["Action: none needed.", "Action:", "The Action: is ```python\nx```",
                                  "Action: ```json\nnot json"])
def test_command_r_plus_text_that_is_not_a_call(text):
    assert parse_every_split(plus, text) == (text, [])


def test_a_call_cut_in_its_parameters_is_truncated():
    parser = CohereParser()
    parser.feed('<|START_ACTION|>[{"tool_call_id": "0", "tool_name": "write_note", "parameters": {"text": "Pa')
    parser.finish()
    (call,) = parser.result().tool_calls
    assert parser.truncated and call.name == "write_note"


def _required(style: type) -> str:
    plan = style(ChatTemplate.default()).plan(
        Conversation(messages=[{"role": "user", "content": "hi"}], tools=TOOLS, tool_choice="required"))
    assert plan.grammar is not None
    return plan.grammar


def test_grammars():
    grammar = _required(CohereStyle)
    assert accepts(grammar, '<|START_ACTION|>[\n    {"tool_call_id": "12", "tool_name": "get_weather", '
                            '"parameters": {"city": "Paris"}}\n]<|END_ACTION|>')
    assert not accepts(grammar, '<|START_ACTION|>[{"tool_name": "get_weather", "parameters": {"city": "Paris"}}]'
                                '<|END_ACTION|>')  # the number is part of the format
    plus_grammar = _required(CommandRPlusStyle)
    assert accepts(plus_grammar,
                   'Action: ```json\n[{"tool_name": "get_weather", "parameters": {"city": "Paris"}}]\n```')
    assert not accepts(plus_grammar, 'Action: [{"tool_name": "get_weather", "parameters": {"city": "Paris"}}]')
