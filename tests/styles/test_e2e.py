"""End to end on the real llama-server and the real default model (Gemma 3 270M base), one template per dialect
(the representative its samples name).

The model is tiny and was never trained on any of these formats: whatever it
calls, it calls because the plan's grammar, triggers and stops made it. For
each dialect: ``required`` and a named function always give valid calls,
``auto`` gives text or valid calls (a call cut off by n_predict must be flagged,
never passed off as whole), ``none`` never gives calls. All requests run up
front, two at a time (the server has two slots); each test checks one result.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import pytest

from oaiproxy.conversation.model import Conversation, NamedToolChoice, ToolSpec
from oaiproxy.dialects import get_style
from oaiproxy.dialects.base import ContentDelta, ParsedOutput, ToolCallDelta
from oaiproxy.dialects.registry import sampled_styles
from oaiproxy.templating import chat_template
from oaiproxy.templating.chat_template import DEFAULT_TEMPLATE_STOPS, ChatTemplate
from oaiproxy.validation import validate_tool_calls

pytestmark = pytest.mark.integration

WEATHER = ToolSpec("get_weather", "Get the weather in a city", {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 16},
                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city"], "additionalProperties": False})
SEARCH = ToolSpec("search_web", "Search the web", {
    "type": "object", "properties": {"query": {"type": "string", "maxLength": 16}},
    "required": ["query"], "additionalProperties": False})
TOOLS = [WEATHER, SEARCH]
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]

#: (dialect, its representative template), as each dialect declares in its samples
DIALECTS = [(cls.name, cls.samples.representative) for cls in sampled_styles() if cls.samples is not None]
CHOICES = {"required": "required", "named": NamedToolChoice("search_web"), "auto": "auto", "none": "none"}


def n_predict_for(style: str, choice: str) -> int:
    """Enough for one whole call (the dialect's ``samples.call_tokens``: the generic envelope adds a bounded
    thought, Mistral's call a 9-character id).

    ``none`` needs only a little text; under ``auto`` a base model writes text until n_predict (native
    dialects, whose ``auto`` grammar is lazy) or the envelope (generic).
    """
    samples = get_style(style).samples
    assert samples is not None
    if choice == "none":
        return 16
    if choice == "auto" and samples.lazy_auto:
        return 32
    return samples.call_tokens


@dataclass
class Outcome:
    text: str
    stop_type: str
    parsed: ParsedOutput
    truncated: bool
    streamed: tuple
    seconds: float
    timings: dict


def _streamed(events) -> tuple:
    content = "".join(e.text for e in events if isinstance(e, ContentDelta))
    args: dict[int, str] = {}
    for e in events:
        if isinstance(e, ToolCallDelta):
            args[e.index] = args.get(e.index, "") + e.arguments
    return content, tuple(args.items())


def _run(upstream, templates_dir, style: str, filename: str, choice_name: str) -> Outcome:
    if filename == "default":
        tpl = ChatTemplate.default()
        extra_stops = list(DEFAULT_TEMPLATE_STOPS)
    else:
        path = templates_dir / filename
        assert path.is_file(), path
        # llama-server adds the model's BOS itself
        tpl = ChatTemplate(path.read_text(encoding="utf-8"), bos_token="", eos_token="</s>", name=filename)
        extra_stops = []
    dialect = get_style(style)(tpl)
    plan = dialect.plan(Conversation(messages=QUESTION, tools=TOOLS, tool_choice=CHOICES[choice_name],
                                     parallel_tool_calls=False))
    n_predict = n_predict_for(style, choice_name)
    body = plan.completion_fields() | {"n_predict": n_predict, "temperature": 0.7, "seed": 42}
    body["stop"] = body.get("stop", []) + extra_stops
    start = time.monotonic()
    data = upstream.post("/completion", body, timeout=600)
    seconds = time.monotonic() - start
    text = data["content"]
    # the same text, one character at a time, as a stream would deliver it
    events = [ev for ch in text for ev in plan.parser.feed(ch)] + plan.parser.finish()
    parsed = plan.parser.result()
    return Outcome(text, data.get("stop_type", ""), parsed, bool(getattr(plan.parser, "truncated", False)),
                   _streamed(events), seconds, data.get("timings") or {})


#: the day the templates that print today's date (Mistral Small 3.2, Llama 3.x, ...) see, so a prompt does not
#: change with the calendar. (With 2026-01-15 the base model ended Mistral Small 3.2's auto answer at its first
#: token: the date is part of what it reads.)
TODAY = datetime(2026, 12, 2, 12, 0)


@pytest.fixture(scope="module")
def outcomes(upstream, templates_dir):
    jobs = [(s, f, c) for s, f in DIALECTS for c in CHOICES]
    with pytest.MonkeyPatch.context() as mp, ThreadPoolExecutor(max_workers=2) as pool:
        mp.setitem(chat_template._ENV.globals, "strftime_now", TODAY.strftime)
        futures = {job: pool.submit(_run, upstream, templates_dir, *job) for job in jobs}
        results = {job: f.result() for job, f in futures.items()}
    # the figures behind the run (shown with -s / -rP): what each dialect cost and produced
    for (style, _, choice), o in results.items():
        t = o.timings
        kind = "calls" if o.parsed.tool_calls else "text"
        print(f"{style:17} {choice:8} {o.seconds:6.1f}s prompt {t.get('prompt_n', '?'):>4} tok "
              f"{t.get('prompt_per_second', 0):6.1f} tok/s, gen {t.get('predicted_n', '?'):>3} tok "
              f"{t.get('predicted_per_second', 0):5.1f} tok/s, stop={o.stop_type:5} {kind}: {o.text[:90]!r}")
    return results


def _describe(o: Outcome) -> str:
    return f"output={o.text!r} stop={o.stop_type} parsed={o.parsed} ({o.seconds:.1f}s)"


def _check_stream_matches(o: Outcome) -> None:
    content, args = o.streamed
    assert (o.parsed.content or "") in (content, content.strip()) or (o.parsed.content is None and not content.strip())
    assert [a for _, a in args] == [c.arguments for c in o.parsed.tool_calls]


@pytest.mark.parametrize("style,filename", DIALECTS)
@pytest.mark.parametrize("choice", ["required", "named"])
def test_forced_choice_always_gives_valid_calls(outcomes, style, filename, choice):
    o = outcomes[(style, filename, choice)]
    assert o.parsed.tool_calls, _describe(o)
    assert not o.truncated, _describe(o)
    assert validate_tool_calls(o.parsed.tool_calls, TOOLS) == [], _describe(o)
    if choice == "named":
        assert {c.name for c in o.parsed.tool_calls} == {"search_web"}, _describe(o)
    assert len(o.parsed.tool_calls) == 1  # parallel_tool_calls is false
    _check_stream_matches(o)


@pytest.mark.parametrize("style,filename", DIALECTS)
def test_auto_gives_text_or_valid_calls(outcomes, style, filename):
    o = outcomes[(style, filename, "auto")]
    problems = validate_tool_calls(o.parsed.tool_calls, TOOLS)
    if o.truncated:  # cut off by n_predict: flagged, and the cut call does not pass validation
        assert o.stop_type == "limit", _describe(o)
    else:
        assert problems == [], _describe(o)
        if not (o.parsed.tool_calls or o.parsed.content):  # an empty answer is the model's (it ended at once),
            assert o.stop_type == "eos" and not o.text.strip(), _describe(o)  # never text the parser dropped
    _check_stream_matches(o)


@pytest.mark.parametrize("style,filename", DIALECTS)
def test_none_never_gives_calls(outcomes, style, filename):
    o = outcomes[(style, filename, "none")]
    assert o.parsed.tool_calls == [], _describe(o)
    assert not o.truncated
    _check_stream_matches(o)
