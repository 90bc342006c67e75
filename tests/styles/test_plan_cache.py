"""The plan cache (oaiproxy/dialects/plan_cache.py) gives every dialect the plan it would build afresh.

For each dialect with samples, on its representative template, and each way of offering tools
(auto, required, a named tool, none, a response format, one call at a time): a plan served from
the cache for a new conversation with the same tools is the fresh plan of that conversation (the
same ``/completion`` fields, and a parser that reads the dialect's calls the same way); a changed
tool list, schema key order or option misses; the bound holds. Behaviour only, never time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from oaiproxy.conversation.model import Conversation, NamedToolChoice, ResponseFormat, ToolSpec
from oaiproxy.dialects.base import GenerationPlan, StyleError
from oaiproxy.dialects.hermes import HermesStyle
from oaiproxy.dialects.plan_cache import PlanCache, plan_key, splits

from .helpers import HISTORY, TOOLS, WEATHER, run
from .test_dialects import DIALECTS, ONE_TEMPLATE, PARIS, QUERY, make

FIRST = [{"role": "user", "content": "What is the weather in Paris?"}]

OPTIONS: dict[str, dict[str, Any]] = {
    "auto": {},
    "required": {"tool_choice": "required"},
    "named": {"tool_choice": NamedToolChoice("get_weather")},
    "none": {"tool_choice": "none"},
    "one-call": {"tool_choice": "required", "parallel_tool_calls": False},
    "response-format": {"response_format": ResponseFormat(type="json_schema", schema={
        "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]})},
}


def conv(messages: list[dict[str, Any]], tools: list[ToolSpec] | None = None, **kw: Any) -> Conversation:
    return Conversation(messages=messages, tools=list(TOOLS if tools is None else tools), **kw)


def same_plan(a: GenerationPlan, b: GenerationPlan) -> None:
    assert a.completion_fields() == b.completion_fields()
    assert (a.prompt, a.grammar, a.grammar_lazy, a.grammar_triggers, a.preserved_tokens, a.stop, a.reasoning) == (
        b.prompt, b.grammar, b.grammar_lazy, b.grammar_triggers, b.preserved_tokens, b.stop, b.reasoning)


def same_reading(cached: Callable[[], GenerationPlan], fresh: Callable[[], GenerationPlan], texts: list[str]) -> None:
    """A new plan of each kind per text (parsers are used up): each parser reads each text alike."""
    def reading(plan: GenerationPlan, text: str) -> tuple[str | None, list[tuple[str, str]]]:
        result = run(plan.parser, text, [])[1]
        return result.content, [(c.name, c.arguments) for c in result.tool_calls]  # ids are random

    for text in texts:
        assert reading(cached(), text) == reading(fresh(), text), text


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("name,filename", ONE_TEMPLATE)
def test_a_cached_plan_is_the_fresh_plan(templates_dir: Any, name: str, filename: str, option: str) -> None:
    samples = DIALECTS[name]
    texts = [samples.calls([PARIS]), samples.calls([PARIS, QUERY]), "Just text.", *(o.text for o in samples.outputs)]
    cache = PlanCache()
    # two styles on the same template: the cached side and the fresh side share no parser state
    cached_style, fresh_style = make(name, templates_dir, filename), make(name, templates_dir, filename)
    first, second = conv(FIRST, **OPTIONS[option]), conv(HISTORY, **OPTIONS[option])
    for c in (first, second):
        try:
            got = cache.plan(cached_style, c)
        except StyleError as exc:
            with pytest.raises(StyleError) as fresh_error:
                fresh_style.plan(c)
            assert (str(exc), exc.param) == (str(fresh_error.value), fresh_error.value.param)
            return
        same_plan(got, fresh_style.plan(c))
        same_reading(lambda c=c: cache.plan(cached_style, c), lambda c=c: fresh_style.plan(c), texts)
    stats = cache.stats()
    if splits(cached_style):
        # built once, for the first conversation; the second one and every parser after were hits
        assert (stats.misses, stats.hits, stats.bypassed) == (1, 1 + 2 * len(texts), 0)
    else:
        assert (stats.misses, stats.hits, stats.bypassed) == (0, 0, 2 + 2 * len(texts))


def test_every_native_dialect_splits(templates_dir: Any) -> None:
    """Only a style that plans its own way (generic) is planned whole; the model-native dialects split."""
    whole = sorted(name for name, filename in ONE_TEMPLATE if not splits(make(name, templates_dir, filename)))
    assert set(whole) <= {"generic", "generic-json-schema"}, whole


def test_a_changed_tool_list_or_option_misses(templates_dir: Any) -> None:
    style = make("hermes", templates_dir, "Qwen-Qwen2.5-7B-Instruct.jinja")
    cache = PlanCache()
    base = cache.plan(style, conv(FIRST))
    assert cache.plan(style, conv(HISTORY)).grammar == base.grammar and cache.stats().hits == 1
    unit = WEATHER.parameters["properties"]["unit"]
    variants = {
        "description": [dataclasses.replace(WEATHER, description="Weather, now"), TOOLS[1]],
        "enum": [dataclasses.replace(WEATHER, parameters={**WEATHER.parameters, "properties": {
            **WEATHER.parameters["properties"], "unit": {**unit, "enum": ["celsius", "kelvin"]}}}), TOOLS[1]],
        "key order": [dataclasses.replace(WEATHER, parameters={**WEATHER.parameters, "properties": dict(
            reversed(list(WEATHER.parameters["properties"].items())))}), TOOLS[1]],
        "tool order": list(reversed(TOOLS)),
        "one tool less": [WEATHER],
        "strict": [dataclasses.replace(WEATHER, strict=True), TOOLS[1]],
    }
    for i, (what, tools) in enumerate(variants.items(), start=2):
        c = conv(HISTORY, tools=tools)
        got = cache.plan(style, c)
        assert cache.stats().misses == i, what
        same_plan(got, make("hermes", templates_dir, "Qwen-Qwen2.5-7B-Instruct.jinja").plan(c))
        if what in ("enum", "one tool less", "tool order"):  # key order: the grammar has its own
            assert got.grammar != base.grammar, what
    misses = cache.stats().misses
    for option in ({"tool_choice": "required"}, {"parallel_tool_calls": False}, {"reasoning_effort": "low"},
                   {"template_kwargs": {"x": 1}}):
        cache.plan(style, conv(HISTORY, **option))
        misses += 1
        assert cache.stats().misses == misses, option
    # a tool list mutated in place after it was planned: the key is read anew, so it misses
    tools = [ToolSpec("f", "", {"type": "object", "properties": {"a": {"type": "string"}}})]
    first = cache.plan(style, conv(FIRST, tools=tools))
    tools[0].parameters["properties"]["a"] = {"type": "integer"}
    again = cache.plan(style, conv(FIRST, tools=tools))
    assert cache.stats().misses == misses + 2 and again.grammar != first.grammar


def test_the_messages_are_not_part_of_the_key(templates_dir: Any) -> None:
    style = make("hermes", templates_dir, "Qwen-Qwen2.5-7B-Instruct.jinja")
    assert plan_key(style, conv(FIRST)) == plan_key(style, conv(HISTORY))
    assert plan_key(style, conv(FIRST)) != plan_key(style, conv(FIRST, tool_choice="required"))
    other = make("hermes", templates_dir, "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja")
    assert plan_key(style, conv(FIRST)) != plan_key(other, conv(FIRST))  # another template


def test_the_bound_holds_and_the_least_recently_used_go_first(templates_dir: Any) -> None:
    style = make("hermes", templates_dir, "Qwen-Qwen2.5-7B-Instruct.jinja")
    one = PlanCache()
    one.plan(style, conv(FIRST, tools=[WEATHER]))
    size = one.stats().bytes
    assert size > len(one.plan(style, conv(FIRST, tools=[WEATHER])).grammar or "")
    cache = PlanCache(max_bytes=int(size * 2.5))
    tools = [[dataclasses.replace(WEATHER, description=f"variant {i}")] for i in range(4)]
    for t in tools[:2]:
        cache.plan(style, conv(FIRST, tools=t))
    cache.plan(style, conv(FIRST, tools=tools[0]))  # 0 used again: 1 is the oldest now
    cache.plan(style, conv(FIRST, tools=tools[2]))
    stats = cache.stats()
    assert stats.entries == 2 and stats.bytes <= stats.max_bytes
    hits = stats.hits
    cache.plan(style, conv(FIRST, tools=tools[0]))
    assert cache.stats().hits == hits + 1  # kept
    cache.plan(style, conv(FIRST, tools=tools[1]))
    assert cache.stats().hits == hits + 1  # dropped: a miss
    tiny = PlanCache(max_bytes=100)  # smaller than any plan: nothing is kept, every plan is still right
    c = conv(FIRST)
    same_plan(tiny.plan(style, c), style.plan(c))
    assert tiny.stats().entries == 0 and tiny.stats().bytes == 0


def test_a_style_that_plans_its_own_way_is_planned_whole(templates_dir: Any) -> None:
    class OwnPlan(HermesStyle):
        def plan(self, conversation: Conversation) -> GenerationPlan:
            plan = super().plan(conversation)
            plan.stop.append(str(len(conversation.messages)))  # reads the messages: must not be cached
            return plan

    style = OwnPlan(make("hermes", templates_dir, "Qwen-Qwen2.5-7B-Instruct.jinja").template)
    assert not splits(style)
    cache = PlanCache()
    assert cache.plan(style, conv(FIRST)).stop[-1] == "1"
    assert cache.plan(style, conv(HISTORY)).stop[-1] == str(len(HISTORY))
    assert cache.stats().bypassed == 2 and cache.stats().entries == 0


def test_a_plan_from_the_cache_owns_its_lists(templates_dir: Any) -> None:
    style = make("hermes", templates_dir, "Qwen-Qwen2.5-7B-Instruct.jinja")
    cache = PlanCache()
    cache.plan(style, conv(FIRST))
    hit = cache.plan(style, conv(HISTORY))
    hit.stop.append("mine")
    hit.preserved_tokens.clear()
    hit.grammar_triggers[0]["value"] = "changed"
    again = cache.plan(style, conv(HISTORY))
    assert "mine" not in again.stop and again.preserved_tokens and again.grammar_triggers[0]["value"] == "<tool_call>"


def test_options_json_cannot_spell_are_planned_whole(templates_dir: Any) -> None:
    style = make("hermes", templates_dir, "Qwen-Qwen2.5-7B-Instruct.jinja")
    cache = PlanCache()
    c = conv(FIRST, template_kwargs={"when": object()})  # not JSON: no key, so no cache, and no error
    assert cache.plan(style, c).grammar == style.plan(c).grammar
    assert cache.stats().bypassed == 1 and cache.stats().entries == 0
