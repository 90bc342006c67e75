"""Every dialect on its real templates: prompt, history, grammar (with the GBNF oracle) and the plan's fields.

Each dialect declares its templates and its text for a call (``samples`` on its
style, see oaiproxy/dialects/samples.py); the tests check, per
dialect and template, that tools reach the prompt, that a history with calls
and tool results renders, that the grammar for each ``tool_choice`` admits
exactly the valid calls, and that the parser reads those calls back.
"""

from __future__ import annotations

import json

import pytest

from oaiproxy.conversation.model import Conversation, NamedToolChoice, ResponseFormat, ToolSpec
from oaiproxy.dialects import get_style
from oaiproxy.dialects.base import StyleError
from oaiproxy.dialects.registry import sampled_styles
from oaiproxy.dialects.samples import Samples
from tests.gbnf_oracle import accepts

from .helpers import HISTORY, SEARCH, TOOLS, WEATHER, args_of, parse_every_split, template

#: every dialect that declares its samples (its templates and call texts), by name
DIALECTS: dict[str, Samples] = {cls.name: cls.samples for cls in sampled_styles() if cls.samples is not None}

CASES = [(name, t) for name, d in DIALECTS.items() for t in d.templates]
ONE_TEMPLATE = [(name, d.representative) for name, d in DIALECTS.items()]
LAZY = [(name, t) for name, t in ONE_TEMPLATE if DIALECTS[name].lazy_auto]
FALLBACK = sorted(name for name, d in DIALECTS.items() if d.fallback_call is not None)


def _generic(calls):
    return DIALECTS["generic"].calls(calls)


def _none_keeps_tools(style: str) -> bool:
    """Whether ``tool_choice: "none"`` keeps the tool section of ``auto`` and forbids the call in the grammar."""
    return bool(getattr(get_style(style), "none_keeps_tools", False))


def _prefix(style: str) -> str:
    """The text a plain JSON answer opens with in this dialect (Functionary v3.2's ``all\\n`` recipient line)."""
    return getattr(get_style(style), "answer_prefix", "")


PARIS = ("get_weather", '{"city": "Paris"}')
PARIS_F = ("get_weather", '{"city": "Paris", "unit": "fahrenheit"}')
QUERY = ("search_web", '{"query": "news", "limit": 2}')
WRONG_NAME = ("get_wether", '{"city": "Paris"}')
WRONG_ARGS = [
    ("get_weather", '{"city": "Paris", "unit": "kelvin"}'),  # not in the enum
    ("get_weather", '{"town": "Paris"}'),  # unknown key, required key missing
    ("get_weather", "{}"),
    ("search_web", '{"query": "news", "limit": 9}'),  # above maximum
    ("get_weather", '{"city": "' + "x" * 30 + '"}'),  # longer than maxLength
]


def make(style: str, templates_dir, filename: str):
    from oaiproxy.templating.chat_template import ChatTemplate

    tpl = ChatTemplate.default() if filename == "default" else template(templates_dir, filename)
    return get_style(style)(tpl)


def conv(**kw) -> Conversation:
    kw.setdefault("messages", [{"role": "user", "content": "What is the weather in Paris?"}])
    kw.setdefault("tools", list(TOOLS))
    return Conversation(**kw)


# -- prompts --------------------------------------------------------------------------------


@pytest.mark.parametrize("style,filename", CASES)
def test_tools_reach_the_prompt_and_none_keeps_them_out(templates_dir, style, filename):
    dialect = make(style, templates_dir, filename)
    with_tools = dialect.plan(conv()).prompt
    assert "get_weather" in with_tools and "search_web" in with_tools
    assert "Get the current weather for a city" in with_tools
    assert "What is the weather in Paris?" in with_tools
    without = dialect.plan(conv(tool_choice="none")).prompt
    if _none_keeps_tools(style):  # the auto prompt itself, prefix-stable for llama-server's cache
        assert without == with_tools
        return
    assert "get_weather" not in without and "search_web" not in without
    assert "What is the weather in Paris?" in without


@pytest.mark.parametrize("choice", ["auto", "none"])
@pytest.mark.parametrize("style,filename", CASES)
def test_history_with_calls_and_results_renders(templates_dir, style, filename, choice):
    dialect = make(style, templates_dir, filename)
    prompt = dialect.plan(conv(messages=HISTORY, tool_choice=choice)).prompt
    marker = DIALECTS[style].history_call(*PARIS)
    assert marker in prompt, prompt[-1500:]
    # in order: the question, the call, its result, the answer, the new question
    positions = [prompt.find(s) for s in ("What is the weather in Paris?", marker, "sunny, 21 degrees",
                                          "It is sunny in Paris.", "And in Berlin?")]
    assert -1 not in positions and positions == sorted(positions), positions


def test_named_choice_shows_only_that_tool(templates_dir):
    dialect = make("hermes", templates_dir, "Qwen-Qwen2.5-7B-Instruct.jinja")
    prompt = dialect.plan(conv(tool_choice=NamedToolChoice("search_web"))).prompt
    assert "search_web" in prompt and "get_weather" not in prompt.split("What is the weather")[0]


def test_mistral_history_ids_are_nine_characters(templates_dir):
    dialect = make("mistral-nemo", templates_dir, "mistralai-Mistral-Nemo-Instruct-2407.jinja")
    prompt = dialect.plan(conv(messages=HISTORY)).prompt
    call_id = prompt.split('"id": "')[1].split('"')[0]
    assert len(call_id) == 9 and call_id.isalnum()
    assert f'"call_id": "{call_id}"' in prompt  # the tool result points at the same id


def test_generic_merges_system_into_user_for_strict_templates(templates_dir):
    dialect = make("generic", templates_dir, "google-gemma-2-2b-it.jinja")  # raises on a system role
    prompt = dialect.plan(conv(messages=HISTORY)).prompt
    assert "You are a helpful assistant." in prompt and "Always reply with exactly one JSON object" in prompt


# -- grammars -------------------------------------------------------------------------------


def _check_grammar(grammar: str, good: list[str], bad: list[str]) -> None:
    for text in good:
        assert accepts(grammar, text), f"grammar rejects a valid answer: {text!r}"
    for text in bad:
        assert not accepts(grammar, text), f"grammar accepts an invalid answer: {text!r}"


@pytest.mark.parametrize("style,filename", ONE_TEMPLATE)
def test_required_grammar_admits_exactly_valid_calls(templates_dir, style, filename):
    d = DIALECTS[style]
    plan = make(style, templates_dir, filename).plan(conv(tool_choice="required"))
    assert plan.grammar and not plan.grammar_lazy
    good = [d.calls([PARIS]), d.calls([PARIS_F]), d.calls([QUERY])]
    if not d.one_call_per_answer:  # e.g. Llama's bare JSON call
        good.append(d.calls([PARIS, QUERY]))
    _check_grammar(plan.grammar, good, [d.calls([WRONG_NAME])] + [d.calls([c]) for c in WRONG_ARGS] + [
        "The weather is nice.", ""])


@pytest.mark.parametrize("style,filename", ONE_TEMPLATE)
def test_named_and_single_call_grammars(templates_dir, style, filename):
    d = DIALECTS[style]
    dialect = make(style, templates_dir, filename)
    named = dialect.plan(conv(tool_choice=NamedToolChoice("search_web"))).grammar
    _check_grammar(named, [d.calls([QUERY])], [d.calls([PARIS])])
    if d.one_call_per_answer:  # its required form is one call anyway; the auto form can repeat
        single = dialect.plan(conv(parallel_tool_calls=False)).grammar
        _check_grammar(single, [d.auto_text([PARIS])], [d.auto_text([PARIS, QUERY])])
    else:
        single = dialect.plan(conv(tool_choice="required", parallel_tool_calls=False)).grammar
        _check_grammar(single, [d.calls([PARIS])], [d.calls([PARIS, QUERY])])


@pytest.mark.parametrize("style,filename", LAZY)
def test_auto_is_a_lazy_grammar_woken_by_the_dialects_triggers(templates_dir, style, filename):
    d = DIALECTS[style]
    plan = make(style, templates_dir, filename).plan(conv())
    assert plan.grammar_lazy and plan.grammar_triggers
    fields = plan.completion_fields()
    assert fields["grammar_lazy"] is True
    # on the wire a trigger's type is llama-server's enum number
    numbers = {"token": 0, "word": 1, "pattern": 2, "pattern_full": 3}
    assert fields["grammar_triggers"] == [{"type": numbers[t["type"]], "value": t["value"]}
                                          for t in plan.grammar_triggers]
    for trig in plan.grammar_triggers:  # llama-server insists single-token trigger words are preserved
        if trig["type"] == "word":
            assert trig["value"] in plan.preserved_tokens
    _check_grammar(plan.grammar, [d.auto_text([PARIS, QUERY])], [d.auto_text([WRONG_NAME])])


def test_generic_auto_allows_a_result_or_calls_and_required_only_calls(templates_dir):
    dialect = make("generic", templates_dir, "default")
    auto = dialect.plan(conv())
    answer = json.dumps({"thought_about_next_step_only": "I know this.", "next_step": {"result": "It is sunny."}})
    assert not auto.grammar_lazy
    _check_grammar(auto.grammar, [answer, _generic([PARIS])], [
        json.dumps({"thought_about_next_step_only": "x" * 101, "next_step": {"result": "a"}}),  # thought too long
        json.dumps({"next_step": {"result": "a"}}),
    ])
    required = dialect.plan(conv(tool_choice="required")).grammar
    _check_grammar(required, [_generic([PARIS])], [answer])


def test_generic_result_follows_the_response_format(templates_dir):
    schema = {"type": "object", "properties": {"temp": {"type": "integer"}}, "required": ["temp"],
              "additionalProperties": False}
    dialect = make("generic", templates_dir, "default")
    plan = dialect.plan(conv(response_format=ResponseFormat("json_schema", schema, "w", True)))
    good = json.dumps({"thought_about_next_step_only": "", "next_step": {"result": {"temp": 21}}})
    bad = json.dumps({"thought_about_next_step_only": "", "next_step": {"result": "21"}})
    _check_grammar(plan.grammar, [good, _generic([PARIS])], [bad])
    events = []
    plan.parser.feed(good)
    plan.parser.finish()
    assert plan.parser.result().content == '{"temp": 21}'
    del events
    # without tools the whole answer is the JSON, no envelope
    plain = dialect.plan(conv(tools=[], response_format=ResponseFormat("json_schema", schema, "w", True)))
    _check_grammar(plain.grammar, ['{"temp": 21}'], [good])


@pytest.mark.parametrize("style,filename", ONE_TEMPLATE)
def test_none_has_no_tools_in_grammar_and_parses_no_calls(templates_dir, style, filename):
    d = DIALECTS[style]
    dialect = make(style, templates_dir, filename)
    plan = dialect.plan(conv(tool_choice="none"))
    text = d.calls([PARIS])
    if _none_keeps_tools(style):  # the envelope with the answer only: the grammar forbids any call
        answer = json.dumps({"thought_about_next_step_only": "", "next_step": {"result": "sunny"}})
        _check_grammar(plan.grammar, [answer], [text])
        with_format = dialect.plan(conv(tool_choice="none", response_format=ResponseFormat("json_object")))
        _check_grammar(with_format.grammar, [answer.replace('"sunny"', '{"a": 1}')], [answer, text])
        return
    assert plan.grammar is None and not plan.grammar_lazy
    plan.parser.feed(text)
    plan.parser.finish()
    result = plan.parser.result()
    assert result.tool_calls == [] and result.content
    with_format = dialect.plan(conv(tool_choice="none", response_format=ResponseFormat("json_object")))
    assert with_format.grammar and not with_format.grammar_lazy
    prefix = _prefix(style)
    _check_grammar(with_format.grammar, [prefix + '{"a": 1}'], [prefix + "[1]", "sunny"])


@pytest.mark.parametrize("style,filename", LAZY)
def test_auto_with_response_format_is_calls_or_the_json_answer(templates_dir, style, filename):
    d = DIALECTS[style]
    plan = make(style, templates_dir, filename).plan(conv(response_format=ResponseFormat("json_object")))
    prefix = _prefix(style)
    assert not plan.grammar_lazy
    _check_grammar(plan.grammar, [d.calls([PARIS]), prefix + '{"answer": "sunny"}'], ["sunny", prefix + "[]"])


@pytest.mark.parametrize("style,filename", ONE_TEMPLATE)
def test_unsupported_schemas_name_the_request_field(templates_dir, style, filename):
    dialect = make(style, templates_dir, filename)
    bad_tool = ToolSpec("odd", "", {"type": "object", "properties": {"x": {"not": {"type": "string"}}}})
    with pytest.raises(StyleError) as e:
        dialect.plan(conv(tools=[WEATHER, SEARCH, bad_tool], tool_choice="required"))
    assert e.value.param == "tools[2].function.parameters"
    with pytest.raises(StyleError) as e:
        dialect.plan(conv(tool_choice="none", response_format=ResponseFormat("json_schema", {"not": {}})))
    assert e.value.param == "response_format.json_schema.schema"


# -- reading calls back ---------------------------------------------------------------------


@pytest.mark.parametrize("style,filename", ONE_TEMPLATE)
def test_parser_reads_back_what_the_grammar_admits(templates_dir, style, filename):
    d = DIALECTS[style]
    dialect = make(style, templates_dir, filename)
    sample = [PARIS] if d.one_call_per_answer else [PARIS, QUERY]
    text = d.calls(sample)
    content, calls = parse_every_split(lambda: dialect.plan(conv(tool_choice="required")).parser, text)
    assert content.strip() == ""
    assert args_of(calls) == args_of(sample)
    if d.auto_calls:
        text = "Let me check. " + d.auto_calls([PARIS, QUERY])
        content, calls = parse_every_split(lambda: dialect.plan(conv()).parser, text)
        assert content.strip() == "Let me check."
        assert args_of(calls) == args_of([PARIS, QUERY])


@pytest.mark.parametrize("style,filename", ONE_TEMPLATE)
def test_truncated_call_is_reported(templates_dir, style, filename):
    from oaiproxy.validation import validate_tool_calls

    d = DIALECTS[style]
    dialect = make(style, templates_dir, filename)
    text = d.calls([PARIS])
    cut = text.index("Par") + 2  # inside the arguments
    parser = dialect.plan(conv(tool_choice="required")).parser
    parser.feed(text[:cut])
    parser.finish()
    result = parser.result()
    assert parser.truncated
    assert validate_tool_calls(result.tool_calls, TOOLS), result


@pytest.mark.parametrize("filename", ["default", "google-gemma-2-2b-it.jinja"])
@pytest.mark.parametrize("style", FALLBACK)
def test_forced_style_on_a_template_without_tool_support(templates_dir, style, filename):
    """--style on a template that knows nothing of tools: the style's own prompt and history text."""
    dialect = make(style, templates_dir, filename)
    assert not dialect.template.supports_tools
    plan = dialect.plan(conv(messages=HISTORY))
    assert "get_weather" in plan.prompt and "Get the current weather for a city" in plan.prompt
    fallback_call = DIALECTS[style].fallback_call
    assert fallback_call is not None
    assert fallback_call(*PARIS) in plan.prompt  # a past call as the dialect spells it out
    assert "Result of the call to get_weather:\nsunny, 21 degrees" in plan.prompt
    assert "You are a helpful assistant." in plan.prompt and "And in Berlin?" in plan.prompt
    # without tools in play (no system note) a system message must still reach a template without a system role
    assert "You are a helpful assistant." in dialect.plan(conv(messages=HISTORY, tool_choice="none")).prompt
    required = dialect.plan(conv(messages=HISTORY, tool_choice="required"))
    _check_grammar(required.grammar, [DIALECTS[style].calls([PARIS])], [DIALECTS[style].calls([WRONG_NAME])])
