"""The tool memo (oaiproxy/conversation/checks.py): a tool that passed is not checked again, and nothing
else changes — the same conversation comes out, and a bad tool gets the same 400 naming the same field
whether or not a similar (or equal-looking) tool was remembered."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from oaiproxy.conversation import checks
from oaiproxy.conversation.checks import ToolMemo, check_conversation, tool_extras, tool_key
from oaiproxy.conversation.model import Conversation, ToolSpec
from oaiproxy.errors import BadRequest

PARAMS: dict[str, Any] = {"type": "object", "required": ["city"], "properties": {
    "city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}}}
MESSAGES = [{"role": "user", "content": "Weather?"}]


@pytest.fixture(autouse=True)
def fresh_memo(monkeypatch: pytest.MonkeyPatch) -> ToolMemo:
    memo = ToolMemo()
    monkeypatch.setattr(checks, "TOOL_MEMO", memo)
    return memo


def tool(name: str = "get_weather", params: Any = None, **kw: Any) -> ToolSpec:
    return ToolSpec(name, "Weather", copy.deepcopy(PARAMS) if params is None else params, **kw)


def error_of(tools: list[ToolSpec]) -> tuple[str, str | None, str | None]:
    with pytest.raises(BadRequest) as exc:
        check_conversation(Conversation(messages=MESSAGES, tools=tools))
    return str(exc.value), exc.value.param, exc.value.code


def fresh_error_of(tools: list[ToolSpec], monkeypatch: pytest.MonkeyPatch) -> tuple[str, str | None, str | None]:
    with monkeypatch.context() as m:
        m.setattr(checks, "TOOL_MEMO", ToolMemo())
        return error_of(tools)


def test_a_repeated_tool_is_checked_once_and_comes_back_canonical(fresh_memo: ToolMemo) -> None:
    first = check_conversation(Conversation(messages=MESSAGES, tools=[tool(), tool("other")]))
    again = check_conversation(Conversation(messages=MESSAGES, tools=[tool(), tool("other")]))
    assert fresh_memo.stats()["hits"] == 2 and fresh_memo.stats()["entries"] == 2
    assert [a is b for a, b in zip(first.tools, again.tools, strict=True)] == [True, True]
    assert again.tools == [tool(), tool("other")]  # equal to what was sent
    assert tool_key(again.tools[0]) == tool_key(tool()) and tool_extras(again.tools[0]) == {}
    assert tool_extras(tool()) is None  # a spec the memo does not own has no shared extras


def test_the_canonical_spec_is_a_copy_the_request_cannot_change() -> None:
    sent = tool()
    kept = check_conversation(Conversation(messages=MESSAGES, tools=[sent])).tools[0]
    sent.parameters["properties"]["city"]["type"] = "integer"
    assert kept.parameters["properties"]["city"]["type"] == "string"
    changed = check_conversation(Conversation(messages=MESSAGES, tools=[sent])).tools[0]
    assert changed is not kept and changed.parameters["properties"]["city"]["type"] == "integer"


@pytest.mark.parametrize("variant", ["bad schema", "too deep", "empty name"])
def test_a_bad_tool_after_a_good_similar_one_gets_the_same_400(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tool()
    check_conversation(Conversation(messages=MESSAGES, tools=[good, tool("other")]))
    if variant == "bad schema":
        bad = tool(params={**PARAMS, "properties": {**PARAMS["properties"], "days": {"type": "integr"}}})
    elif variant == "too deep":
        deep: dict[str, Any] = {"type": "string"}
        for _ in range(120):
            deep = {"type": "array", "items": deep}
        bad = tool(params={**PARAMS, "properties": {"city": deep}})
    else:
        bad = tool(name="")
    for tools, where in (([tool("other"), bad], 1), ([bad, tool("other")], 0), ([good, tool("x"), bad], 2)):
        got = error_of(tools)
        assert got == fresh_error_of(tools, monkeypatch)
        assert got[1] is not None and got[1].startswith(f"tools[{where}].function.")


@pytest.mark.parametrize("lookalike", ["tuple for a list", "integer key", "strict", "extra keys"])
def test_a_lookalike_of_a_remembered_tool_is_checked_as_itself(lookalike: str, monkeypatch: pytest.MonkeyPatch,
                                                               fresh_memo: ToolMemo) -> None:
    """Same JSON text is not enough: a tuple or an integer key (no JSON body has them) must still be refused,
    and the strictness options are part of the key."""
    check_conversation(Conversation(messages=MESSAGES, tools=[tool()]))
    if lookalike == "tuple for a list":
        other = tool(params={**PARAMS, "required": ("city",)})
    elif lookalike == "integer key":
        other = tool(params={**PARAMS, "properties": {**PARAMS["properties"], 7: {"type": "string"}}})
        check_conversation(Conversation(messages=MESSAGES, tools=[tool(params={
            **PARAMS, "properties": {**PARAMS["properties"], "7": {"type": "string"}}})]))
    elif lookalike == "strict":
        other = tool(strict=True)  # strict closes every object: still fine, but a tool of its own
    else:
        other = tool(extra_keys=True)
    if lookalike in ("strict", "extra keys"):
        got = check_conversation(Conversation(messages=MESSAGES, tools=[other])).tools[0]
        assert got == other and fresh_memo.stats()["entries"] == 2
        return
    assert error_of([other]) == fresh_error_of([other], monkeypatch)
    assert error_of([other])[1] == "tools[0].function.parameters"


def test_duplicate_names_and_tool_choice_are_checked_on_every_request() -> None:
    check_conversation(Conversation(messages=MESSAGES, tools=[tool(), tool("other")]))
    assert error_of([tool(), tool("other"), tool()])[1] == "tools[2].function.name"
    with pytest.raises(BadRequest) as exc:
        check_conversation(Conversation(messages=MESSAGES, tools=[tool()], tool_choice="sometimes"))  # type: ignore[arg-type]
    assert exc.value.param == "tool_choice"


def test_the_memo_is_bounded_by_the_json_it_keeps() -> None:
    one = ToolMemo()
    one.keep(tool(), tool_key(tool()))
    size = one.stats()["bytes"]
    memo = ToolMemo(max_bytes=int(size * 2.5))
    specs = [tool(f"t{i}") for i in range(4)]
    kept = [memo.keep(s, tool_key(s)) for s in specs]
    stats = memo.stats()
    assert stats["entries"] == 2 and stats["bytes"] <= stats["max_bytes"]
    assert memo.canonical(specs[0], tool_key(specs[0])) is None  # the oldest went first
    assert memo.canonical(specs[3], tool_key(specs[3])) is kept[3]
    assert memo.entry(kept[0]) is None and memo.entry(kept[3]) is not None  # dropped by identity too
    tiny = ToolMemo(max_bytes=10)  # smaller than any tool: nothing is kept, the spec itself comes back
    assert tiny.keep(specs[0], tool_key(specs[0])) is specs[0] and tiny.stats()["entries"] == 0


def test_a_tool_json_cannot_spell_is_checked_every_time(fresh_memo: ToolMemo) -> None:
    odd = tool(params={**PARAMS, "description": "\ud800"})  # a lone surrogate: no UTF-8 JSON for it
    assert tool_key(odd) is None
    got = check_conversation(Conversation(messages=MESSAGES, tools=[odd]))
    assert got.tools == [odd] and fresh_memo.stats()["entries"] == 0
