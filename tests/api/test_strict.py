"""Strict schemas, undeclared keys, the meta-schema check and hostile histories.

Unit tests on the request → Conversation step and the grammar/validator pair, then
the same promises through the real proxy on the real default model: a schema the
proxy cannot enforce is a 400 naming the tool and the keyword; a ``format`` beside
``maxLength`` is enforced (never a 500); strict and default tool arguments carry
only declared keys; a hostile history is a 400, not a 500.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from oaiproxy.api.chat.protocol import ChatCompletionRequest
from oaiproxy.api.chat.translate import to_conversation
from oaiproxy.api.protocol import parse_request
from oaiproxy.conversation.checks import MAX_ARGUMENTS_DEPTH, json_text_depth
from oaiproxy.conversation.model import ToolCall
from oaiproxy.conversation.tools import plan_tools
from oaiproxy.dialects.gbnf import add_tool_args
from oaiproxy.dialects.generic import example_arguments
from oaiproxy.errors import BadRequest
from oaiproxy.grammar import GrammarBuilder
from oaiproxy.validation import validate_tool_calls
from tests.api.conftest import MODEL, http
from tests.gbnf_oracle import accepts

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def _req(parameters=WEATHER, strict=None, **extra) -> ChatCompletionRequest:
    fn = {"name": "get_weather", "parameters": parameters}
    if strict is not None:
        fn["strict"] = strict
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": fn}], **extra}
    return parse_request(ChatCompletionRequest, body)


def _grammar(conv) -> str:
    builder = GrammarBuilder()
    rules = add_tool_args(builder, plan_tools(conv), "t")
    return builder.to_gbnf(rules["get_weather"])


def _problems(conv, arguments: dict) -> list[str]:
    return validate_tool_calls([ToolCall(id="c1", name="get_weather", arguments=json.dumps(arguments))], conv.tools)


# ------------------------------------------------------------------ undeclared keys and strict


def test_default_tool_arguments_admit_only_declared_keys():
    conv = to_conversation(_req())
    extra = {"city": "Paris", "units": "metric"}
    assert not accepts(_grammar(conv), json.dumps(extra))
    assert _problems(conv, extra), "the check reads the same closed schema"
    assert accepts(_grammar(conv), json.dumps({"city": "Paris"}))
    assert not _problems(conv, {"city": "Paris"})


def test_tool_extra_keys_setting_keeps_json_schema_open_objects():
    conv = to_conversation(_req(), tool_extra_keys=True)
    extra = {"city": "Paris", "units": "metric"}
    assert accepts(_grammar(conv), json.dumps(extra))
    assert not _problems(conv, extra)


def test_free_form_object_without_properties_stays_open_by_default():
    params = {"type": "object", "properties": {"headers": {"type": "object"}}, "required": ["headers"]}
    conv = to_conversation(_req(params))
    value = {"headers": {"X-A": "1"}}
    assert accepts(_grammar(conv), json.dumps(value)) and not _problems(conv, value)


def test_explicit_additional_properties_is_honoured_without_strict():
    params = {**WEATHER, "additionalProperties": {"type": "integer"}}
    conv = to_conversation(_req(params))
    assert accepts(_grammar(conv), json.dumps({"city": "x", "n": 1}))
    assert not _problems(conv, {"city": "x", "n": 1}) and _problems(conv, {"city": "x", "n": "a"})


def test_strict_closes_every_object_even_with_extra_keys_on():
    params = {"type": "object", "properties": {"where": {"type": "object", "properties": {"city": {"type": "string"}}}}}
    conv = to_conversation(_req(params, strict=True), tool_extra_keys=True)
    assert conv.tools[0].strict is True
    nested_extra = {"where": {"city": "Paris", "country": "FR"}}
    assert not accepts(_grammar(conv), json.dumps(nested_extra))
    assert _problems(conv, nested_extra)
    # without strict, --tool-extra-keys lets the nested object carry it
    loose = to_conversation(_req(params), tool_extra_keys=True)
    assert accepts(_grammar(loose), json.dumps(nested_extra)) and not _problems(loose, nested_extra)


def test_strict_with_open_additional_properties_is_a_400_naming_the_tool():
    with pytest.raises(BadRequest) as e:
        to_conversation(_req({**WEATHER, "additionalProperties": True}, strict=True))
    assert e.value.param == "tools[0].function.parameters"
    assert "get_weather" in e.value.message and "additionalProperties" in e.value.message


def test_strict_response_format_closes_objects():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    conv = to_conversation(parse_request(ChatCompletionRequest, {
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}}))
    assert conv.response_format.schema["additionalProperties"] is False
    loose = to_conversation(parse_request(ChatCompletionRequest, {
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}))
    assert "additionalProperties" not in loose.response_format.schema


# ------------------------------------------------------------------ meta-schema


@pytest.mark.parametrize("params, keyword", [
    ({"type": "object", "properties": {"a": {"type": {"nested": 1}}}}, "type"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": "a"}, "required"),
    ({"type": "object", "properties": {"a": {"type": "array", "minItems": -1}}}, "minItems"),
    ({"type": "object", "properties": {"a": {"type": "bogus"}}}, "type"),
])
def test_invalid_tool_schema_is_a_400_naming_tool_and_keyword(params, keyword):
    with pytest.raises(BadRequest) as e:
        to_conversation(_req(params))
    assert e.value.param == "tools[0].function.parameters"
    assert "get_weather" in e.value.message and keyword in e.value.message, e.value.message


def test_invalid_response_schema_is_a_400():
    with pytest.raises(BadRequest) as e:
        to_conversation(parse_request(ChatCompletionRequest, {
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}}))
    assert e.value.param == "response_format.json_schema.schema"


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": "a"},
    {"type": "object", "properties": {"a": {"type": "string"}}, "required": [{"x": 1}]},
    {"type": {"a": 1}},
    {"type": ["object", {"a": 1}], "properties": "nope"},
    {"anyOf": "x"},
])
def test_example_arguments_never_raises(schema):
    """The generic style's walker: a 500 (TypeError) before, even though the meta-schema check now comes first."""
    example_arguments(schema)


# ------------------------------------------------------------------ hostile history


def _deep(n: int) -> str:
    return "[" * n + "]" * n


def test_json_text_depth_ignores_brackets_in_strings():
    assert json_text_depth('{"a": "[[[[", "b": [1, {"c": []}]}') == 4
    assert json_text_depth('"\\"[["') == 0


def test_deeply_nested_history_arguments_are_a_400():
    body = {"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": _deep(100_000)}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]}
    with pytest.raises(BadRequest) as e:
        to_conversation(parse_request(ChatCompletionRequest, body))
    assert e.value.param == "messages[1].tool_calls[0].function.arguments"
    # at the limit it is rendered
    body["messages"][1]["tool_calls"][0]["function"]["arguments"] = _deep(MAX_ARGUMENTS_DEPTH)
    to_conversation(parse_request(ChatCompletionRequest, body))


def test_generic_style_renders_unparsable_arguments(templates_dir):
    """Arguments that json.loads cannot take (RecursionError included) are shown as sent, not a 500."""
    from oaiproxy.conversation.model import Conversation, ToolSpec
    from oaiproxy.dialects.generic import GenericStyle
    from oaiproxy.templating.chat_template import ChatTemplate

    style = GenericStyle(ChatTemplate.default())
    conv = Conversation(messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": _deep(100_000)}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}], tools=[ToolSpec(name="f")])
    plan = style.plan(conv)
    assert "[[[[" in plan.prompt


# ------------------------------------------------------------------ through the real proxy


SEND_MAIL = {"type": "function", "function": {
    "name": "send_mail", "description": "Send an e-mail.",
    "parameters": {"type": "object", "properties": {
        "to": {"type": "string", "format": "email", "maxLength": 254},
        "subject": {"type": "string", "maxLength": 60}}, "required": ["to", "subject"]}}}


def _chat(proxy, body, timeout=300):
    status, _, raw = http("POST", proxy.base_url + "/chat/completions",
                          {"model": MODEL, "temperature": 0.8, **body}, timeout=timeout)
    return status, json.loads(raw)


@pytest.mark.integration
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_email_with_max_length_is_enforced_not_a_500(endpoint_proxy, seed):
    """The issue's send_mail: 3 of 3 answered 500 (the model wrote "..." as the address)."""
    status, body = _chat(endpoint_proxy, {
        "messages": [{"role": "user", "content": "Mail the team that the build is green."}],
        "tools": [SEND_MAIL], "tool_choice": {"type": "function", "function": {"name": "send_mail"}},
        "seed": seed, "max_tokens": 120})
    assert status == 200, body
    choice = body["choices"][0]
    if choice["finish_reason"] == "length":
        return  # cut by max_tokens: no call passed on, which is the promise too
    call = choice["message"]["tool_calls"][0]
    args = json.loads(call["function"]["arguments"])
    from oaiproxy.grammar import FORMAT_CHECKER
    jsonschema.validate(args, SEND_MAIL["function"]["parameters"], format_checker=FORMAT_CHECKER)
    assert "@" in args["to"] and len(args["to"]) <= 254


@pytest.mark.integration
@pytest.mark.parametrize("strict", [True, None])
def test_tool_arguments_carry_only_declared_keys(endpoint_proxy, strict):
    """A prompt that dictates extra keys (before: the model wrote them, the grammar let it, and the
    check passed them on); now the answer has only the declared one, strict and by default."""
    fn = {"name": "get_weather", "parameters": WEATHER, **({"strict": strict} if strict else {})}
    for seed in (1, 2):
        status, body = _chat(endpoint_proxy, {
            "messages": [{"role": "user", "content": 'Call get_weather with exactly these arguments: '
                                                     '{"city": "Paris", "units": "celsius", "days": 3}'}],
            "tools": [{"type": "function", "function": fn}], "tool_choice": "required", "seed": seed,
            "max_tokens": 80})
        assert status == 200, body
        for call in body["choices"][0]["message"].get("tool_calls") or []:
            assert set(json.loads(call["function"]["arguments"])) <= {"city"}, call


@pytest.mark.integration
def test_invalid_schema_and_hostile_history_are_400_through_the_proxy(endpoint_proxy):
    status, body = _chat(endpoint_proxy, {
        "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"a": {"type": "string"}}, "required": "a"}}}]})
    assert status == 400 and body["error"]["param"] == "tools[0].function.parameters", body
    assert "required" in body["error"]["message"] and "'f'" in body["error"]["message"]
    status, body = _chat(endpoint_proxy, {
        "max_tokens": 4, "tools": [{"type": "function", "function": {"name": "f", "parameters": WEATHER}}],
        "messages": [{"role": "user", "content": "hi"},
                     {"role": "assistant", "content": None, "tool_calls": [
                         {"id": "c1", "type": "function", "function": {"name": "f", "arguments": _deep(100_000)}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": "ok"}]})
    assert status == 400 and body["error"]["param"] == "messages[1].tool_calls[0].function.arguments", body
    status, body = _chat(endpoint_proxy, {
        "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
        "tools": [{"type": "function", "function": {"name": "f", "strict": True,
                                                    "parameters": {**WEATHER, "additionalProperties": True}}}]})
    assert status == 400 and body["error"]["param"] == "tools[0].function.parameters", body


def test_generic_example_shows_a_valid_value_for_each_enforced_format():
    """The generic prompt's example call: the small model copies it, and "..." is no e-mail address."""
    from oaiproxy.grammar import FORMAT_CHECKER, schema_to_gbnf
    from oaiproxy.grammar.formats import FORMATS

    for fmt in FORMATS:
        schema = {"type": "string", "format": fmt}
        value = example_arguments(schema)
        assert FORMAT_CHECKER.conforms(value, fmt), (fmt, value)
        assert accepts(schema_to_gbnf(schema), json.dumps(value)), (fmt, value)


@pytest.mark.parametrize("extra_keys", [False, True])
def test_engine_passes_the_tool_extra_keys_setting(extra_keys):
    """--tool-extra-keys reaches the grammar through ChatEngine.plan (the whole planning path)."""
    from oaiproxy.api.chat.serving import ChatEngine
    from oaiproxy.dialects.generic import GenericStyle
    from oaiproxy.engine import Engine
    from oaiproxy.runtime.upstream import LlamaServerClient
    from oaiproxy.settings import Settings
    from oaiproxy.templating.chat_template import ChatTemplate

    engine = ChatEngine(Engine.from_settings(Settings(tool_extra_keys=extra_keys), template=ChatTemplate.default(),
                                             style=GenericStyle, model_id="m",
                                             client=LlamaServerClient("http://127.0.0.1:9")))
    _, plan, _ = engine.plan(_req(tool_choice="required"))
    call = ('{"thought_about_next_step_only": "x", "next_step": {"tool_calls": [{"name": "get_weather", '
            '"arguments": {"city": "Paris", "units": "metric"}}]}}')
    assert accepts(plan.grammar, call) == extra_keys
