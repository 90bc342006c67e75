"""ChatTemplate without a server: the transformers-compatible context and input normalisation."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from oaiproxy.templating.chat_template import ChatTemplate, TemplateError
from tests.templates import samples


def render(source: str, messages=None, **kwargs) -> str:
    return ChatTemplate(source, name="test template").render(messages or [], **kwargs)


def test_context_carries_special_tokens_and_generation_flag():
    template = ChatTemplate("{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}",
                            bos_token="<s>", eos_token="</s>")
    assert template.render([]) == "<s>|</s>|True"
    assert template.render([], add_generation_prompt=False) == "<s>|</s>|False"


def test_extra_context_reaches_the_template_but_cannot_replace_messages():
    template = ChatTemplate("{{ date_string }} {{ messages | length }}")
    assert template.render([{"role": "user", "content": "hi"}], date_string="01 Jan 2025") == "01 Jan 2025 1"


def test_trim_and_lstrip_blocks_are_on():
    source = "{% for m in messages %}\n    {% if true %}\n{{ m.content }}\n    {% endif %}\n{% endfor %}"
    assert render(source, samples.plain_conversation()) == (
        f"{samples.FIRST_USER}\n{samples.ANSWER}\n{samples.LAST_USER}\n")


def test_loop_controls_extension_is_enabled():
    source = ("{% for i in range(10) %}{% if i == 3 %}{% break %}{% endif %}"
              "{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}")
    assert render(source) == "02"


def test_tojson_does_not_escape_html_or_unicode_and_takes_json_dumps_options():
    value = {"b": "<tag> & 'quote' é", "a": [1, 2]}
    assert render("{{ v | tojson }}", v=value) == json.dumps(value, ensure_ascii=False)
    assert render("{{ v | tojson(indent=2) }}", v=value) == json.dumps(value, ensure_ascii=False, indent=2)
    assert render("{{ v | tojson(separators=(',', ':')) }}", v=value) == '{"b":"<tag> & \'quote\' é","a":[1,2]}'
    assert render("{{ v | tojson(sort_keys=true) }}", v=value).startswith('{"a"')


def test_tojson_serialises_a_mapped_sequence_like_a_list():
    assert render("{{ tools | map(attribute='function') | map(attribute='name') | tojson }}",
                  tools=samples.TOOLS) == '["get_weather"]'


def test_safe_does_not_turn_concatenations_into_html():
    # Functionary v3.1 writes "..."|safe + tool|tojson; with Markup that would print &#34;
    assert render("{{ 'x: '|safe + v|tojson }}", v={"k": "v"}) == 'x: {"k": "v"}'


def test_raise_exception_becomes_a_template_error_naming_the_template():
    template = ChatTemplate("{{ raise_exception('Only user and assistant roles are supported!') }}",
                            name="my-model.gguf")
    with pytest.raises(TemplateError, match=r"my-model\.gguf.*Only user and assistant roles are supported!"):
        template.render([])


def test_strftime_now_formats_the_current_date():
    before = datetime.now().strftime("%Y-%m-%d")
    out = render("{{ strftime_now('%Y-%m-%d') }}")
    assert out in (before, datetime.now().strftime("%Y-%m-%d"))


def test_generation_tag_from_transformers_renders_its_body():
    source = "{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}{% endfor %}"
    assert render(source, samples.plain_conversation()) == (
        f"[{samples.FIRST_USER}][{samples.ANSWER}][{samples.LAST_USER}]")


def test_tools_is_undefined_when_not_given_or_empty_and_the_list_when_given():
    source = "{{ tools is defined }} {% for t in tools %}{{ t.function.name }}{% endfor %}"
    assert render(source) == "False "
    assert render(source, tools=[]) == "False "
    assert render(source, tools=samples.TOOLS) == "True get_weather"


# --- tool calls and arguments ----------------------------------------------------------------------


def test_arguments_are_an_object_for_templates_that_iterate_them():
    source = ("{% for m in messages if m.tool_calls %}{% for c in m.tool_calls %}"
              "{% for k, v in c.function.arguments.items() %}{{ k }}={{ v }};{% endfor %}"
              "{{ c.function.arguments.city }}{% endfor %}{% endfor %}")
    assert render(source, samples.tool_conversation()) == "city=Paris;unit=celsius;Paris"


def test_arguments_object_serialises_with_tojson_and_is_a_mapping():
    source = ("{% set c = messages[2].tool_calls[0] %}{{ c.function.arguments is mapping }} "
              "{{ c.function.arguments is string }} {{ c.function.arguments | tojson }}")
    assert render(source, samples.tool_conversation()) == 'True False {"city": "Paris", "unit": "celsius"}'


def test_arguments_print_and_concatenate_as_the_string_the_client_sent():
    arguments = '{ "city":"Paris" ,"unit": "celsius"}'  # odd spacing survives verbatim
    messages = [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call00001", "type": "function", "function": {"name": "f", "arguments": arguments}}]}]
    args = "messages[0].tool_calls[0].function.arguments"
    assert render(f"{{{{ {args} }}}}", messages) == arguments
    assert render(f"{{{{ 'args: ' + {args} }}}}", messages) == "args: " + arguments
    assert render(f"{{{{ {args} ~ '!' }}}}", messages) == arguments + "!"
    assert render(f"{{{{ {args} | string }}}}", messages) == arguments


@pytest.mark.parametrize("arguments", ["not json", "[1, 2]", '"text"', ""])
def test_arguments_that_are_not_a_json_object_stay_strings(arguments):
    messages = [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call00001", "type": "function", "function": {"name": "f", "arguments": arguments}}]}]
    out = render("{% set a = messages[0].tool_calls[0].function.arguments %}{{ a is string }}|{{ a }}", messages)
    assert out == f"True|{arguments}"


def test_arguments_already_given_as_objects_are_passed_through():
    messages = [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call00001", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]}]
    assert render("{{ messages[0].tool_calls[0].function.arguments | tojson }}", messages) == '{"x": 1}'


def test_null_content_renders_as_empty_not_none():
    assert render("[{{ messages[2].content }}]", samples.tool_conversation()) == "[]"


def test_the_callers_messages_are_not_modified():
    messages = samples.tool_conversation()
    before = json.dumps(messages)
    render("{{ messages | tojson }}", messages, tools=samples.TOOLS)
    assert json.dumps(messages) == before
    assert messages[2]["content"] is None
    assert isinstance(messages[2]["tool_calls"][0]["function"]["arguments"], str)


# --- errors ------------------------------------------------------------------------------------------


def test_syntax_error_names_template_and_line():
    with pytest.raises(TemplateError, match=r"broken\.jinja.*line 3"):
        ChatTemplate("line one\n{{ ok }}\n{% for x in %}\n", name="broken.jinja")


def test_unknown_tag_is_a_syntax_error():
    with pytest.raises(TemplateError, match=r"t: syntax error at line 1: .*unknown tag 'frobnicate'"):
        ChatTemplate("{% frobnicate %}", name="t")


def test_render_error_names_template_and_line():
    template = ChatTemplate("ok\n{{ messages[0].content.nope.deeper }}", name="model.gguf")
    with pytest.raises(TemplateError, match=r"model\.gguf failed at line 2"):
        template.render([{"role": "user", "content": "hi"}])


def test_type_errors_in_the_template_are_template_errors():
    with pytest.raises(TemplateError, match=r"TypeError"):
        render("{{ 1 + 'a' }}")


@pytest.mark.parametrize("messages", ["hello", [1, 2], None])
def test_malformed_messages_are_rejected_clearly(messages):
    with pytest.raises(TemplateError, match="messages"):
        ChatTemplate("{{ messages }}").render(messages)  # type: ignore[arg-type]


def test_malformed_tools_are_rejected_clearly():
    with pytest.raises(TemplateError, match="tools"):
        ChatTemplate("{{ tools }}").render([], tools={"name": "f"})  # type: ignore[arg-type]


def test_non_string_source_is_rejected():
    with pytest.raises(TemplateError, match="must be a string"):
        ChatTemplate(None)  # type: ignore[arg-type]


# --- compilation cache and capabilities --------------------------------------------------------------


def test_same_source_compiles_once():
    source = "{{ messages | length }} cached-template-marker"
    a, b = ChatTemplate(source, name="a"), ChatTemplate(source, name="b", bos_token="<s>")
    assert a._sandboxed.template is b._sandboxed.template
    assert a.render([]) == b.render([]) == "0 cached-template-marker"


def test_supports_tools_is_whether_the_tools_reach_the_prompt():
    assert ChatTemplate("{% for t in tools or [] %}{{ t.function.name }}{% endfor %}").supports_tools
    assert not ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}").supports_tools
    # mentioning tools only to refuse them is not support
    assert not ChatTemplate("{% if tools %}{{ raise_exception('no tools') }}{% endif %}").supports_tools


def test_supports_system_role():
    assert ChatTemplate("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}").supports_system_role
    refusing = ("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}"
                "{% endif %}{{ m.content }}{% endfor %}")
    assert not ChatTemplate(refusing).supports_system_role
    dropping = "{% for m in messages if m.role != 'system' %}{{ m.content }}{% endfor %}"
    assert not ChatTemplate(dropping).supports_system_role


def test_absurdly_nested_input_is_a_template_error_or_renders_never_a_crash():
    deep_arguments = "[" * 100_000 + "]" * 100_000
    messages = [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call00001", "type": "function", "function": {"name": "f", "arguments": deep_arguments}}]}]
    out = render("{{ messages[0].tool_calls[0].function.arguments is string }}", messages)
    assert out == "True"

    schema: dict = {"type": "string"}
    for _ in range(5000):
        schema = {"type": "array", "items": schema}
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    try:
        render("{{ tools | tojson }}", [], tools=tools)
    except TemplateError as e:
        assert "test template" in str(e)


def test_omitted_tool_description_and_parameters_are_filled_in_like_llama_cpp():
    tools = [{"type": "function", "function": {"name": "get_time"}}]
    assert render("{{ tools | tojson }}", tools=tools) == (
        '[{"type": "function", "function": {"name": "get_time", "description": "", '
        '"parameters": {"type": "object", "properties": {}}}}]')
    assert tools == [{"type": "function", "function": {"name": "get_time"}}]  # the caller's stay as they were


def test_a_tool_that_is_not_an_object_is_named():
    with pytest.raises(TemplateError, match=r"test template: tools\[1\] must be an object"):
        render("{{ tools }}", tools=[samples.TOOLS[0], "get_time"])
