"""What a repeated request reuses — checked tools from the tool memo, their remembered ``tojson`` texts, the
chat template's opaque render of the tools, the plan cache — gives every dialect, on every one of its
templates, the prompt and plan a fresh proxy builds, byte for byte.

The fresh side is planned from tools the memo does not know (copies), by a template that never renders its
tools opaque; the reused side from a checked conversation (canonical tools), through a plan cache, twice
(a miss, then a hit with other messages). Behaviour only, never time.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any, cast

import pytest

from oaiproxy.conversation.checks import _spec_json, check_conversation, tool_extras, tool_key
from oaiproxy.conversation.model import Conversation, NamedToolChoice, ResponseFormat
from oaiproxy.dialects.base import GenerationPlan, Style, StyleError
from oaiproxy.dialects.plan_cache import PlanCache

from .helpers import HISTORY, TOOLS
from .test_dialects import CASES, make

OPTIONS: dict[str, dict[str, Any]] = {
    "auto": {},
    "required": {"tool_choice": "required", "parallel_tool_calls": False},
    "named": {"tool_choice": NamedToolChoice("search_web")},
    "none": {"tool_choice": "none"},
    "response-format": {"response_format": ResponseFormat(type="json_schema", schema={
        "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]})},
}
FIRST: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
WITH_CALLS = cast(list[dict[str, Any]], HISTORY)
NO_SYSTEM = WITH_CALLS[1:]

#: templates that render their tools opaque (print only ``tool|tojson``): the reuse must reach them
OPAQUE_EXPECTED = {"Qwen-Qwen2.5-7B-Instruct.jinja", "meta-llama-Llama-3.2-3B-Instruct.jinja"}


def fresh_style(name: str, templates_dir: Any, filename: str) -> Style:
    style: Style = make(name, templates_dir, filename)
    style.template._opaque_tools = False  # every render from the real tools, as before any reuse
    return style


def fresh_tools(conv: Conversation) -> Conversation:
    """The same conversation with tools the memo has never seen (equal copies)."""
    return dataclasses.replace(conv, tools=[dataclasses.replace(t, parameters=copy.deepcopy(t.parameters))
                                            for t in conv.tools])


def fields(plan: GenerationPlan) -> tuple[Any, ...]:
    return (plan.completion_fields(), plan.prompt, plan.grammar, plan.grammar_lazy, plan.grammar_triggers,
            plan.preserved_tokens, plan.stop, plan.reasoning)


def outcome(plan: Callable[[Conversation], GenerationPlan], conv: Conversation) -> Any:
    try:
        return fields(plan(conv))
    except StyleError as e:
        return ("StyleError", str(e), e.param)


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("name,filename", CASES)
def test_a_reused_prompt_and_plan_are_the_fresh_ones(templates_dir: Any, name: str, filename: str,
                                                     option: str) -> None:
    reused, fresh = make(name, templates_dir, filename), fresh_style(name, templates_dir, filename)
    cache = PlanCache()
    for messages in (FIRST, WITH_CALLS, NO_SYSTEM):
        checked = check_conversation(Conversation(messages=messages, tools=list(TOOLS), **OPTIONS[option]))
        assert all(tool_extras(t) is not None for t in checked.tools)  # canonical: the reused path
        want = outcome(fresh.plan, fresh_tools(checked))
        assert outcome(lambda c: cache.plan(reused, c), checked) == want, messages
        assert outcome(reused.plan, checked) == want, messages  # outside the plan cache too
        # nothing on the way changed the shared canonical tools: their remembered JSON is still their JSON
        assert [tool_key(t) for t in checked.tools] == [_spec_json(t) for t in checked.tools]
    assert fresh.template._opaque_tools is False
    if filename in OPAQUE_EXPECTED and reused.template.supports_tools:
        assert reused.template._opaque_tools is True


def test_the_reuse_reaches_the_templates_that_allow_it(templates_dir: Any) -> None:
    """Not a vacuous comparison: a good share of the real templates render their tools opaque."""
    opaque = []
    for name, filename in CASES:
        style = make(name, templates_dir, filename)
        try:
            style.plan(check_conversation(Conversation(messages=FIRST, tools=list(TOOLS))))
        except StyleError:
            continue
        if style.template._opaque_tools:
            opaque.append(filename)
    assert OPAQUE_EXPECTED <= set(opaque), opaque
    assert len(set(opaque)) >= 10, opaque
