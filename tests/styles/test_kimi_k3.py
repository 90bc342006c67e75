"""Kimi K3's tagged elements where the registry tables don't reach: typed arguments, the json element, escaped
attributes, the frame tokens around the answer, split anywhere."""

from __future__ import annotations

from oaiproxy.conversation.model import Conversation, ToolSpec
from oaiproxy.dialects.kimi_k3 import (
    CALL_CLOSE,
    JSON_CLOSE,
    MESSAGE_CLOSE,
    RESPONSE_CLOSE,
    TOOLS_CLOSE,
    TOOLS_OPEN,
    KimiK3Parser,
    KimiK3Style,
    call_text,
    open_tag,
)
from tests.gbnf_oracle import accepts

from .helpers import HISTORY, TOOLS, args_of, parse_every_split, template

ODD = ToolSpec("say", "", {"type": "object", "properties": {
    'the "text"': {"type": "string"}, "n": {"type": "integer"},
    "flags": {"type": "array", "items": {"type": "boolean"}}},
    "required": ['the "text"'], "additionalProperties": False})


def style(templates_dir) -> KimiK3Style:
    return KimiK3Style(template(templates_dir, "Kimi-K3.jinja"))


def test_typed_arguments_and_the_json_element_split_anywhere():
    text = ("Let me see." + RESPONSE_CLOSE + TOOLS_OPEN
            + call_text("say", '{"the \\"text\\"": "a <b> & c", "n": 3, "flags": [true, false]}')
            + open_tag("call", [("tool", "get_weather"), ("index", "2")]) + open_tag("json", [("type", "object")])
            + '{"city": "Paris"}' + JSON_CLOSE + CALL_CLOSE + TOOLS_CLOSE + MESSAGE_CLOSE)
    assert 'key="the &quot;text&quot;"' in text
    content, calls = parse_every_split(lambda: KimiK3Parser(enabled=True), text)
    assert content == "Let me see."
    assert args_of(calls) == [("say", {'the "text"': "a <b> & c", "n": 3, "flags": [True, False]}),
                              ("get_weather", {"city": "Paris"})]


def test_tools_off_drops_the_frame_and_keeps_a_section_as_text():
    section = TOOLS_OPEN + call_text("f", "{}") + TOOLS_CLOSE
    content, calls = parse_every_split(lambda: KimiK3Parser(enabled=False),
                                       "Answer." + RESPONSE_CLOSE + section + MESSAGE_CLOSE)
    assert (content, calls) == ("Answer." + section, [])


def test_a_call_without_arguments_is_an_empty_object():
    text = RESPONSE_CLOSE + TOOLS_OPEN + call_text("f", "{}") + TOOLS_CLOSE
    assert parse_every_split(lambda: KimiK3Parser(enabled=True), text) == ("", [("f", "{}")])


def test_grammar_types_each_argument_and_escapes_keys(templates_dir):
    plan = style(templates_dir).plan(Conversation(messages=[{"role": "user", "content": "hi"}], tools=[ODD],
                                                  tool_choice="required"))
    grammar = plan.grammar
    assert grammar

    def section(body: str) -> str:
        return TOOLS_OPEN + open_tag("call", [("tool", "say"), ("index", "1")]) + body + CALL_CLOSE + TOOLS_CLOSE

    text_arg = open_tag("argument", [("key", 'the "text"'), ("type", "string")]) + "hi <there><|close|>argument<|sep|>"
    n_arg = open_tag("argument", [("key", "n"), ("type", "number")]) + "3<|close|>argument<|sep|>"
    assert accepts(grammar, section(text_arg))
    assert accepts(grammar, RESPONSE_CLOSE + section(text_arg + n_arg) + MESSAGE_CLOSE)
    assert not accepts(grammar, section(n_arg))  # the required argument is missing
    assert not accepts(grammar, section(text_arg + n_arg.replace('type="number"', 'type="string"')))
    assert not accepts(grammar, section(text_arg + n_arg.replace(">3<", ">3.5<")))
    # a raw string ends at the first <|close|>: it cannot swallow the next argument
    assert not accepts(grammar, section(text_arg.replace("there>", "there><|close|>argument<|sep|>x")))


def test_history_results_follow_their_calls(templates_dir):
    prompt = style(templates_dir).plan(Conversation(messages=HISTORY, tools=list(TOOLS))).prompt
    call = call_text("get_weather", '{"city": "Paris"}')
    result = open_tag("message", [("role", "tool"), ("tool", "get_weather"), ("index", "1")]) + "sunny, 21 degrees"
    assert call in prompt and result in prompt and prompt.index(call) < prompt.index(result)
