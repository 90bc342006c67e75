"""The eval's scoring rules and its case files, without any server."""

from __future__ import annotations

import importlib.util
import json
import sys
from importlib.machinery import SourceFileLoader
from types import ModuleType

from tests.scripts._smoke import REPO


def _eval_module() -> ModuleType:
    """``scripts/eval`` has no .py suffix (it is a command), so load it by path."""
    path = str(REPO / "scripts" / "eval")
    spec = importlib.util.spec_from_loader("oaiproxy_eval_script", SourceFileLoader("oaiproxy_eval_script", path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ev = _eval_module()
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
           "required": ["city"]}


def test_values_compare_by_json_type_and_strings_loosely() -> None:
    assert ev.same_value(5, 5.0)
    assert not ev.same_value(5, "5")
    assert not ev.same_value("5", 5)
    assert not ev.same_value(True, 1)
    assert not ev.same_value(1, True)
    assert ev.same_value(" Paris ", "paris")
    assert not ev.same_value("Paris", "Paris, France")
    assert ev.same_value({"a": [1, {"b": "X"}]}, {"a": [1, {"b": "x "}]})
    assert not ev.same_value({"a": 1}, {"a": 1, "b": 2})  # nested objects must match exactly
    assert not ev.same_value([1, 2], [2, 1])


def test_unmentioned_optional_arguments_are_ignored_but_not_required_ones() -> None:
    assert ev.same_arguments({"city": "Paris"}, {"city": "paris", "unit": "celsius"}, WEATHER)
    assert not ev.same_arguments({"unit": "celsius"}, {"unit": "celsius", "city": "Paris"}, WEATHER)
    assert not ev.same_arguments({"city": "Paris"}, {}, WEATHER)
    assert not ev.same_arguments({"city": "Paris"}, "Paris", WEATHER)
    assert not ev.same_arguments({"city": "Paris"}, {"city": "Paris", "type": "object"}, WEATHER)  # undeclared


def test_parallel_calls_match_in_any_order_one_to_one() -> None:
    schemas = {"get_weather": WEATHER}
    expected = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Berlin"})]
    assert ev.calls_match(expected, [("get_weather", {"city": "Berlin"}), ("get_weather", {"city": "Paris"})], schemas)
    assert not ev.calls_match(expected, [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Paris"})],
                              schemas)
    assert not ev.calls_match(expected, [("get_weather", {"city": "Paris"})], schemas)
    assert ev.calls_match([], [], schemas)
    assert not ev.calls_match([], [("get_weather", {"city": "Paris"})], schemas)


def test_a_call_is_valid_only_for_a_requested_tool_with_arguments_that_validate() -> None:
    schemas = {"get_weather": WEATHER}
    assert ev.check_call("get_weather", '{"city": "Oslo"}', schemas)[0]
    assert ev.check_call("get_weather", '{"city": 3}', schemas)[2].startswith("schema:")
    assert "not JSON" in ev.check_call("get_weather", '{"city": "Oslo"', schemas)[2]
    assert "unknown tool" in ev.check_call("get_time", "{}", schemas)[2]


def test_scoring_a_response() -> None:
    case = ev.Case("c", "single", [{"role": "user", "content": "hi"}],
                   [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}],
                   [("get_weather", {"city": "Oslo"})])

    def response(*calls: tuple[str, str]) -> dict:
        return {"choices": [{"message": {"content": None, "tool_calls": [
            {"id": str(i), "type": "function", "function": {"name": n, "arguments": a}}
            for i, (n, a) in enumerate(calls)]}}]}

    good = ev.score(case, "oaiproxy", "auto", 0.1, response(("get_weather", '{"city": "OSLO"}')), None)
    assert (good.has_call, good.all_valid, good.exact) == (True, True, True)
    wrong = ev.score(case, "oaiproxy", "auto", 0.1, response(("get_weather", '{"city": "Bergen"}')), None)
    assert (wrong.has_call, wrong.all_valid, wrong.exact) == (True, True, False)
    invalid = ev.score(case, "x", "auto", 0.1, response(("get_weather", '{"town": "Oslo"}')), None)
    assert (invalid.all_valid, invalid.exact) == (False, False) and invalid.invalid_reasons
    failed = ev.score(case, "x", "auto", 0.1, None, "HTTP 500: boom")
    assert (failed.has_call, failed.exact, failed.error) == (False, False, "HTTP 500: boom")


def test_the_case_files_hold_at_least_100_checked_cases_in_every_category() -> None:
    cases = ev.load_cases()  # raises on unknown tools or expected calls that fail their own schema
    assert len(cases) >= 100
    per = {c: sum(1 for x in cases if x.category == c) for c in ev.CATEGORIES}
    assert all(n >= 15 for n in per.values()), per
    assert all(not c.expect for c in cases if c.category == "irrelevant")
    assert all(len(c.expect) >= 2 for c in cases if c.category == "parallel")
    json.dumps([c.__dict__ for c in cases])  # cases are plain JSON data


def test_limit_spreads_over_categories() -> None:
    args = ev.parse_args(["--limit", "12"])
    picked = ev.select(ev.load_cases(), args)
    assert len(picked) == 12
    assert {c.category for c in picked} == set(ev.CATEGORIES)


def test_prompt_tokens_are_recorded_and_averaged_per_row() -> None:
    """The prompt's growth is held against quality: each answer's usage.prompt_tokens, their mean per row."""
    case = ev.Case("c", "single", [{"role": "user", "content": "hi"}],
                   [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}],
                   [("get_weather", {"city": "Oslo"})])
    body = {"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]}
    outs = [ev.score(case, "oaiproxy", "auto", 0.1, {**body, "usage": {"prompt_tokens": n}}, None) for n in (100, 300)]
    outs.append(ev.score(case, "oaiproxy", "auto", 0.1, body, None))  # no usage: left out of the mean
    assert [o.prompt_tokens for o in outs] == [100, 300, None]
    rows = ev.summarise(outs, {case.key: case})
    assert {r["category"]: r["prompt_tokens"] for r in rows} == {"single": 200, "all": 200}
