"""Engine pieces that need no server."""

from __future__ import annotations

import pytest

from oaiproxy.engine import strip_partial_stop
from oaiproxy.errors import BadRequest
from oaiproxy.openai_types import ChatCompletionRequest, parse_request


@pytest.mark.parametrize("text, stops, expected", [
    (" The sea.\n\n", ["\n\nUser:"], " The sea."),
    (" The sea.\n", ["\n\nUser:"], " The sea."),
    (" The sea.\n\nUs", ["\n\nUser:", "\nSystem:"], " The sea."),
    (" The sea.", ["\n\nUser:"], " The sea."),
    (" a\nS", ["\nUser:", "\nSystem:"], " a"),
    ("", ["x"], ""),
    (" a b", [], " a b"),
    (" User", ["User:"], " "),
])
def test_strip_partial_stop(text: str, stops: list[str], expected: str) -> None:
    assert strip_partial_stop(text, stops) == expected


def test_validation_messages_have_no_pydantic_prefix() -> None:
    with pytest.raises(BadRequest) as exc:
        parse_request(ChatCompletionRequest, {"messages": [{"role": "tool", "content": "x"}]})
    assert exc.value.param == "messages[0]"
    assert "Value error" not in exc.value.message and "tool_call_id" in exc.value.message
