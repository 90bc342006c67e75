"""Engine pieces that need no server."""

from __future__ import annotations

import pytest

from oaiproxy.api.chat.protocol import ChatCompletionRequest
from oaiproxy.api.protocol import parse_request
from oaiproxy.engine import Engine, strip_partial_stop
from oaiproxy.errors import BadRequest


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


# -- streamed tool calls: what a client that concatenates the deltas holds ---------------------------

import asyncio  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from oaiproxy.api.chat.serving import ChatEngine  # noqa: E402
from oaiproxy.dialects import get_style  # noqa: E402
from oaiproxy.errors import InternalError  # noqa: E402
from oaiproxy.settings import Settings  # noqa: E402
from oaiproxy.templating.chat_template import ChatTemplate  # noqa: E402

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
    "additionalProperties": False}}}


class ScriptedUpstream:
    """Stands in for llama-server: streams a fixed text in pieces, ending as ``final`` says."""

    def __init__(self, pieces: list[str], final: dict[str, Any]):
        self.pieces, self.final = pieces, final

    async def completion_stream(self, body: dict[str, Any]):
        for piece in self.pieces:
            yield {"content": piece, "stop": False}
        yield {"content": "", "stop": True, **self.final}


def _engine(templates_dir: Path, upstream: ScriptedUpstream, mode: str) -> ChatEngine:
    path = templates_dir / "Qwen-Qwen2.5-7B-Instruct.jinja"
    tpl = ChatTemplate(path.read_text(encoding="utf-8"), bos_token="", eos_token="<|im_end|>", name=path.name)
    return ChatEngine(Engine.from_settings(Settings(stream_tool_calls=mode), template=tpl, style=get_style("hermes"),
                                           client=upstream, model_id="m"))  # type: ignore[arg-type]


def _collect(engine: ChatEngine, extra: dict[str, Any] | None = None) -> tuple[list[dict], Exception | None]:
    req = parse_request(ChatCompletionRequest, {"messages": [{"role": "user", "content": "hi"}],
                                                "tools": [WEATHER_TOOL], "stream": True, **(extra or {})})

    async def run() -> tuple[list[dict], Exception | None]:
        chunks: list[dict] = []
        try:
            async for c in engine.stream(req):
                chunks.append(c.model_dump(exclude_none=True))
        except Exception as exc:  # the HTTP layer turns this into an error event
            return chunks, exc
        return chunks, None

    return asyncio.run(run())


def _calls(chunks: list[dict]) -> dict[int, dict[str, str]]:
    """What a client that concatenates tool-call deltas by index ends up holding."""
    out: dict[int, dict[str, str]] = {}
    for c in chunks:
        for choice in c["choices"]:
            for tc in choice["delta"].get("tool_calls") or []:
                held = out.setdefault(tc["index"], {"name": "", "arguments": ""})
                held["name"] += tc["function"].get("name") or ""
                held["arguments"] += tc["function"].get("arguments") or ""
    return out


CUT = ['<tool_call>\n{"name": "get_weather", ', '"arguments": {"city": "Par']
INVALID = ['<tool_call>\n{"name": "get_weather", ', '"arguments": {"city": 5}}\n</tool_call>']
WHOLE = ['<tool_call>\n{"name": "get_weather", ', '"arguments": {"city": "Paris"}}\n</tool_call>']


def test_stream_holds_a_cut_call_back_by_default(templates_dir: Path) -> None:
    chunks, error = _collect(_engine(templates_dir, ScriptedUpstream(CUT, {"stop_type": "limit"}), "whole"))
    assert error is None and _calls(chunks) == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    # incremental mode says what it gives up: the half call was already sent
    chunks, error = _collect(_engine(templates_dir, ScriptedUpstream(CUT, {"stop_type": "limit"}), "incremental"))
    assert _calls(chunks) == {0: {"name": "get_weather", "arguments": '{"city": "Par'}}


def test_stream_never_sends_an_invalid_call_before_the_error(templates_dir: Path) -> None:
    chunks, error = _collect(_engine(templates_dir, ScriptedUpstream(INVALID, {"stop_type": "eos"}), "whole"))
    assert isinstance(error, InternalError) and _calls(chunks) == {}


def test_stream_sends_a_validated_call_whole(templates_dir: Path) -> None:
    chunks, error = _collect(_engine(templates_dir, ScriptedUpstream(WHOLE, {"stop_type": "eos"}), "whole"))
    assert error is None
    assert {k: (v["name"], json.loads(v["arguments"])) for k, v in _calls(chunks).items()} == \
        {0: ("get_weather", {"city": "Paris"})}
    (delta,) = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert delta["choices"][0]["delta"]["tool_calls"][0]["id"].startswith("call_")
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_client_stop_string_inside_a_call_is_a_cut_not_an_error(templates_dir: Path) -> None:
    upstream = ScriptedUpstream(CUT[:1], {"stop_type": "word", "stopping_word": '"arguments"'})
    chunks, error = _collect(_engine(templates_dir, upstream, "whole"), {"stop": ['"arguments"']})
    assert error is None and _calls(chunks) == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # the style's own stop word ends an answer: a broken call there is still a bug, loudly
    upstream = ScriptedUpstream(CUT, {"stop_type": "word", "stopping_word": "<|im_end|>"})
    chunks, error = _collect(_engine(templates_dir, upstream, "whole"))
    assert isinstance(error, InternalError)
