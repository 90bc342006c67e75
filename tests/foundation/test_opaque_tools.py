"""A chat template renders its tools opaque first (oaiproxy/templating/sandbox.py's Opaque): the prompt is then
the one the real tools give, byte for byte, or the template looked into its tools and is rendered from the
real ones. Templates that try every way of using a tool's ``tojson`` text other than printing it."""

from __future__ import annotations

from typing import Any

import pytest

from oaiproxy.templating.chat_template import ChatTemplate, SharedTool

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather \"now\" <b>",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "search", "description": "Search",
                                      "parameters": {"type": "object", "properties": {}}}},
]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]

PLAIN = {
    "tojson": "{% for t in tools %}{{ t | tojson }}\n{% endfor %}{{ messages[-1].content }}",
    "tojson indent": "{% for t in tools %}{{ t | tojson(indent=4) }}{% endfor %}",
    "set then print": "{% for t in tools %}{% set j = t | tojson %}[{{ j }}]{% endfor %}",
    "length and reverse": "{{ tools | length }}{% for t in tools | reverse %}{{ t | tojson }}{% endfor %}",
    "the whole list": "{{ tools | tojson }}|{{ tools | tojson(ensure_ascii=True, separators=(',', ':')) }}",
    "a list the template built": "{{ (tools + []) | tojson }}{{ [tools[0]] | tojson }}",
    "first and last": "{{ tools | first | tojson }}{% for t in tools %}{% if loop.last %}{{ t | tojson }}{% endif %}"
                      "{% endfor %}",
}
LOOKS_INSIDE = {
    "attribute": "{% for t in tools %}{{ t.function.name }}{% endfor %}",
    "item": "{% for t in tools %}{{ t['function']['name'] }}{% endfor %}",
    "replace the text": "{% for t in tools %}{{ (t | tojson) | replace('\"', \"'\") }}{% endfor %}",
    "concatenate": "{% for t in tools %}{{ t | tojson ~ '!' }}{% endfor %}",
    "add": "{% for t in tools %}{{ '>' + t | tojson }}{% endfor %}",
    "set block": "{% set out %}{% for t in tools %}{{ t | tojson }}{% endfor %}{% endset %}{{ out | upper }}",
    "macro": "{% macro m(t) %}{{ t | tojson }}{% endmacro %}{% for t in tools %}{{ m(t) | trim }}{% endfor %}",
    "filter block": "{% filter upper %}{% for t in tools %}{{ t | tojson }}{% endfor %}{% endfilter %}",
    "block": "{% block b %}{% for t in tools %}{{ t | tojson }}{% endfor %}{% endblock %}{{ self.b() | length }}",
    "map join": "{{ tools | map('tojson') | join(',') }}",
    "whole list, indented": "{{ tools | tojson(indent=2) }}",
    "whole list, joined": "{{ (tools | tojson) ~ '' }}",
    "string": "{% for t in tools %}{{ t | string }}{% endfor %}",
    "test": "{% for t in tools %}{% if t is mapping %}{{ t | tojson }}{% endif %}{% endfor %}",
    "truth": "{% for t in tools %}{% if t %}{{ t | tojson }}{% endif %}{% endfor %}",
    "in the text": "{% for t in tools %}{% if 'weather' in t | tojson %}W{% endif %}{% endfor %}",
    "length of the text": "{% for t in tools %}{{ (t | tojson) | length }}{% endfor %}",
    "print the tool": "{% for t in tools %}{{ t }}{% endfor %}",
    "selectattr": "{{ tools | selectattr('type', 'equalto', 'function') | list | length }}",
    "sort": "{% for t in tools | sort(attribute='function.name') %}{{ t | tojson }}{% endfor %}",
    "membership": "{% for t in tools %}{% if t in tools %}{{ t | tojson }}{% endif %}{% endfor %}",
    "recursive loop": "{% for t in tools recursive %}{{ t | tojson }}{% endfor %}",
    "namespace": "{% set ns = namespace(s='') %}{% for t in tools %}{% set ns.s = ns.s ~ t | tojson %}{% endfor %}"
                 "{{ ns.s | trim }}",
}


def render(source: str, tools: list[dict[str, Any]], opaque: bool) -> tuple[str, bool | None]:
    template = ChatTemplate(source, name="t")
    if not opaque:
        template._opaque_tools = False
    return template.render(MESSAGES, tools=tools), template._opaque_tools


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("case", sorted(PLAIN))
def test_a_template_that_only_prints_tojson_renders_its_tools_opaque(case: str, shared: bool) -> None:
    tools: list[dict[str, Any]] = [SharedTool(t) for t in TOOLS] if shared else TOOLS
    want, _ = render(PLAIN[case], TOOLS, opaque=False)
    got, opaque = render(PLAIN[case], tools, opaque=True)
    assert (got, opaque) == (want, True)
    if shared:  # the texts are remembered on the shared tool, and the next render reads them
        assert isinstance(tools[0], SharedTool) and tools[0].texts
        assert render(PLAIN[case], tools, opaque=True)[0] == want


@pytest.mark.parametrize("case", sorted(LOOKS_INSIDE))
def test_a_template_that_looks_into_its_tools_gets_the_real_ones(case: str) -> None:
    want, _ = render(LOOKS_INSIDE[case], TOOLS, opaque=False)
    got, opaque = render(LOOKS_INSIDE[case], [SharedTool(t) for t in TOOLS], opaque=True)
    assert got == want
    assert opaque is False


def test_a_shared_tool_prints_as_the_dict_it_holds() -> None:
    shared = SharedTool(TOOLS[0])
    assert shared == TOOLS[0]
    template = "{% for t in tools %}{{ t.function.name }}={{ t | tojson }}{% endfor %}"
    assert render(template, [shared], opaque=True)[0] == render(template, [TOOLS[0]], opaque=False)[0]


def test_a_refusal_is_the_template_s_own_either_way() -> None:
    source = "{% for t in tools %}{{ t | tojson }}{% endfor %}{{ raise_exception('no ' ~ messages[0].role) }}"
    errors = []
    for opaque in (True, False):
        with pytest.raises(Exception) as exc:
            render(source, TOOLS, opaque=opaque)
        errors.append((type(exc.value), str(exc.value)))
    assert errors[0] == errors[1] and "no system" in errors[0][1]


@pytest.mark.parametrize("source", [
    "{{ tools[0]['function']['parameters']['properties'].update({'x': 1}) }}",  # a shared tool stays unchanged
    "{% for t in tools %}{{ t | string }}{% endfor %}",  # printed whole: measured against the output limit
    "{{ [tools[0], tools[0]] | join }}",
])
def test_a_shared_tool_is_guarded_as_the_dict_it_holds(source: str) -> None:
    """A SharedTool's containers and their sizes are worked out once (sandbox.FrozenTree); the sandbox holds it
    to the same rules as a plain dict: not to be changed, and no bigger in print than the limits allow."""
    from oaiproxy.templating.sandbox import RenderLimits

    big: dict[str, Any] = {"type": "function", "function": {
        "name": "f", "description": "d" * 300,
        "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}}
    outcomes = []
    variants: list[list[dict[str, Any]]] = [[big], [SharedTool(big)]]
    for tools in variants:
        template = ChatTemplate(source, name="t", limits=RenderLimits(min_output_chars=200, output_per_input_char=0))
        template._opaque_tools = False
        try:
            outcomes.append(("ok", template.render(MESSAGES, tools=tools)))
        except Exception as e:  # noqa: BLE001 - the same error either way is the point
            outcomes.append((type(e).__name__, str(e)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == "TemplateError", outcomes[0]
