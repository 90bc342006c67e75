"""Mistral v11, ``[TOOL_CALLS]NAME[ARGS]{…}`` and its ``[CALL_ID]`` variant: parser details, ids, grammar."""

from __future__ import annotations

import pytest

from oaiproxy.conversation.model import Conversation
from oaiproxy.dialects import detect_style
from oaiproxy.dialects.mistral import MistralNemoStyle, MistralV11CallIdStyle, MistralV11Parser, MistralV11Style
from tests.gbnf_oracle import accepts

from .helpers import HISTORY, WEATHER, args_of, parse_every_split, template


def test_two_calls_split_anywhere():
    text = 'Sure.[TOOL_CALLS]f[ARGS]{"a": "[ARGS] }"}\n[TOOL_CALLS]g[ARGS]{} and then text'
    content, calls = parse_every_split(MistralV11Parser, text)
    assert content == "Sure. and then text"
    assert args_of(calls) == [("f", {"a": "[ARGS] }"}), ("g", {})]


def test_the_models_ids_are_kept_and_a_repeated_one_replaced():
    text = '[TOOL_CALLS]f[CALL_ID]a1B2c3D4e[ARGS]{}[TOOL_CALLS]g[CALL_ID]a1B2c3D4e[ARGS]{}'
    parse_every_split(lambda: MistralV11Parser(call_ids=True), text)
    parser = MistralV11Parser(call_ids=True)
    parser.feed(text)
    parser.finish()
    first, second = parser.result().tool_calls
    assert first.id == "a1B2c3D4e" and second.id != first.id and len(second.id) == 9 and second.id.isalnum()


@pytest.mark.parametrize("text", [
    "[TOOL_CALLS] is a token",
    "[TOOL_CALLS]two words[ARGS]{}",
    "[TOOL_CALLS][ARGS]{}",
    "[TOOL_CALLS]f",
])
def test_text_that_is_not_a_call(text):
    assert parse_every_split(MistralV11Parser, text) == (text, [])


def test_an_id_that_is_not_one_is_text():
    text = "[TOOL_CALLS]f[CALL_ID]not an id[ARGS]{}"
    assert parse_every_split(lambda: MistralV11Parser(call_ids=True), text) == (text, [])


def test_a_call_cut_in_its_arguments_is_truncated():
    parser = MistralV11Parser()
    parser.feed('[TOOL_CALLS]write_note[ARGS]{"text": "Par')
    parser.finish()
    (call,) = parser.result().tool_calls
    assert parser.truncated and call.name == "write_note"


def test_detection_keeps_nemo_and_splits_v11_by_call_id(templates_dir):
    def detected(name: str) -> type:
        return detect_style((templates_dir / name).read_text(encoding="utf-8"))

    assert detected("mistralai-Mistral-Nemo-Instruct-2407.jinja") is MistralNemoStyle
    assert detected("Mistral-Small-3.2-24B-Instruct-2506.jinja") is MistralV11CallIdStyle
    assert detected("unsloth-mistral-Devstral-Small-2507.jinja") is MistralV11Style


def test_call_id_grammar_and_history(templates_dir):
    style = MistralV11CallIdStyle(template(templates_dir, "Mistral-Small-3.2-24B-Instruct-2506.jinja"))
    plan = style.plan(Conversation(messages=HISTORY, tools=[WEATHER], tool_choice="required"))
    assert accepts(plan.grammar, '[TOOL_CALLS]get_weather[CALL_ID]abcDEF123[ARGS]{"city": "Paris"}')
    assert not accepts(plan.grammar, '[TOOL_CALLS]get_weather[CALL_ID]abc[ARGS]{"city": "Paris"}')
    assert not accepts(plan.grammar, '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}')
    # the client's id is mapped to 9 characters, the same in the call and its result
    call_id = plan.prompt.split("[CALL_ID]")[1][:9]
    assert call_id.isalnum() and f"[TOOL_RESULTS]{call_id}[TOOL_CONTENT]" in plan.prompt
