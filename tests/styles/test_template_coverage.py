"""Which real chat templates oaiproxy's dialects cover: a measured round trip over every template.

For each llama.cpp template the test renders a conversation whose assistant turn
is one call (``get_weather`` with ``{"city": "Paris"}``) and takes the call's
text as the template writes it: what follows the generation prompt, without the
end-of-turn token. A template covers that round trip when the dialect detection
picks for it has a ``tool_choice: "required"`` grammar that accepts that text (the
GBNF oracle; from the dialect's trigger on if the text opens with something
else, e.g. an empty ``<think></think>``) and a parser that reads exactly that one
call back.

:data:`KNOWN_UNCOVERED` lists every template not covered today and why. It is
strict both ways, like a strict xfail: a template outside it must be covered (a
regression fails), and a template in it must still fail the same way (a new
dialect that covers one must take it off the list).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oaiproxy.conversation.model import Conversation
from oaiproxy.conversation.tools import plan_tools
from oaiproxy.dialects import detect_style
from oaiproxy.dialects.base import Style
from oaiproxy.dialects.native import DialectStyle
from oaiproxy.dialects.prompting import history_for_template, openai_tool, with_reasoning_fields
from oaiproxy.dialects.registry import fallback_style, sampled_styles
from oaiproxy.templating.chat_template import ChatTemplate, TemplateError
from tests._processes import REPO
from tests.gbnf_oracle import accepts

from .helpers import WEATHER

#: the template folder, as the ``templates_dir`` fixture finds it (parametrize needs the names at collection)
TEMPLATES = Path(os.environ.get("OAIPROXY_LLAMA_MODELS", REPO / ".cache" / "llama-models")) / "templates"
TEMPLATE_FILES = sorted(p.name for p in TEMPLATES.glob("*.jinja"))

QUESTION = {"role": "user", "content": "What is the weather in Paris?"}
ARGUMENTS = {"city": "Paris"}
CALL_TURN = {"role": "assistant", "content": "", "tool_calls": [
    {"id": "call00001", "type": "function",
     "function": {"name": "get_weather", "arguments": json.dumps(ARGUMENTS)}}]}

#: end-of-turn tokens (and eos) the real templates close an assistant turn with; stripped off the call text
END_TOKENS = ("</s>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "<|end_of_text|>",
              "<｜end▁of▁sentence｜>", "<|END_OF_TURN_TOKEN|>", "<turn|>", "<seed:eos>", "<end_of_sentence>", "[e~[",
              "<|role_end|>", "</assistant>", "<|eot|>", "<|message_sep|>", "<sep>", "<｜hy_eos:opensource｜>",
              "<|end_of_msg|>", "<SPECIAL_12>",
              # templates that open the next turn after every rendering (DeepSeek R1 Distill after calls,
              # FireFunction v2 always): the model stops at its end of turn and never writes these
              "<｜Assistant｜>", "<|start_header_id|>assistant<|end_header_id|>")

# Outcome kinds; a KNOWN_UNCOVERED reason starts with one of the last four, then ": " and the format family.
COVERED = "covered"
NO_RENDERING = "no tool rendering"
GENERIC = "generic fallback"
GRAMMAR_REJECTS = "grammar rejects"
PARSER_DIFFERS = "parser differs"

_XML_PARAMETER = "XML parameters <function=…><parameter=…>"
_ARG_KEY = "XML <arg_key>/<arg_value> (GLM)"
_INVOKE = "XML <invoke name=…><parameter name=…>"
_DEEPSEEK = "DeepSeek special-token sections <｜tool▁calls▁begin｜>"
_KIMI = "Kimi special-token sections <|tool_calls_section_begin|>"
_HARMONY = "harmony (to=functions.NAME <|channel|>… <|message|>)"
_MISTRAL_V11 = "Mistral v11 [TOOL_CALLS]NAME[ARGS]{…}"
_COHERE = "Cohere actions (tool_name/parameters JSON list)"
_JSON_LIST = "JSON call list in its own tags"
_PYTHONIC = "pythonic [name(arg=…)]"
_NO_CALLS = "the template writes no tool_calls of an assistant turn"

#: every template that is not covered today: its file, the outcome kind and the format family
KNOWN_UNCOVERED: dict[str, str] = {
    # formats a dialect speaks whose template writes a past call in a form the grammar does not produce
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": f"{GRAMMAR_REJECTS}: {_COHERE} after Action: ```json, the "
                                                      "parameters pretty-printed (indent=4), an instruction turn "
                                                      "after the call",
    # templates that do not write a past call at all
    "HuggingFaceTB-SmolLM3-3B.jinja": f"{NO_RENDERING}: {_NO_CALLS}",
    "LFM2-8B-A1B.jinja": f"{NO_RENDERING}: {_NO_CALLS}",
    "LFM2.5-Instruct.jinja": f"{NO_RENDERING}: {_NO_CALLS}",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja": f"{NO_RENDERING}: {_NO_CALLS}",
    "google-gemma-2-2b-it.jinja": f"{NO_RENDERING}: {_NO_CALLS}",
    "ibm-granite-granite-3.3-2B-Instruct.jinja": f"{NO_RENDERING}: {_NO_CALLS}",
    "llama-cpp-rwkv-world.jinja": f"{NO_RENDERING}: {_NO_CALLS}",
    "microsoft-Phi-3.5-mini-instruct.jinja": f"{NO_RENDERING}: {_NO_CALLS}",
}


@dataclass(frozen=True)
class Outcome:
    """What the round trip measured on one template."""

    kind: str
    detail: str = ""
    dialect: str = ""
    #: the call text the template rendered ("" when it renders none)
    text: str = ""


def _strip_end(text: str) -> str:
    """The call text without the end-of-turn tokens and whitespace that close the turn."""
    while True:
        text = text.rstrip()
        end = next((t for t in END_TOKENS if text.endswith(t)), None)
        if end is None:
            return text
        text = text[: -len(end)]


def _after_generation_prompt(full: str, prompt: str) -> str:
    """What the assistant turn adds after the generation prompt.

    Reasoning templates prefill the generation prompt (an opened ``<think>``) and write
    past turns without it; the call text then starts at the last markup boundary
    (after a ``>`` or a newline) the two renders share.
    """
    if full.startswith(prompt):
        return full[len(prompt):]
    pairs = enumerate(zip(full, prompt, strict=False))
    shared = next((i for i, (a, b) in pairs if a != b), min(len(full), len(prompt)))
    boundary = max(full.rfind(">", 0, shared), full.rfind("\n", 0, shared)) + 1
    return full[boundary:]


def _style_for(source: str, template: ChatTemplate) -> Style:
    return detect_style(source)(template)


def render_turn(style: Style, template: ChatTemplate, conversation: Conversation, turn: dict[str, Any],
                variables: dict[str, Any] | None = None) -> tuple[str, str]:
    """The history :data:`QUESTION` + ``turn`` rendered as the dialect prepares a history (past reasoning where
    the template reads it), and the generation prompt after the question alone; ``variables``: template variables.
    """
    map_call_id = style.map_call_id if isinstance(style, DialectStyle) else None
    extra: dict[str, Any] = style.render_extra(plan_tools(conversation)) if isinstance(style, DialectStyle) else {}
    extra = {**(variables or {}), **extra}
    tools = [openai_tool(WEATHER)]
    history = history_for_template([QUESTION, turn], map_call_id)
    if isinstance(style, DialectStyle):
        history = style.adjust_history(history)
    history = with_reasoning_fields(template, history)
    full = template.render(history, tools=tools, add_generation_prompt=False, **extra)
    prompt = template.render(history[:1], tools=tools, add_generation_prompt=True, **extra)
    if template.render(history[:1], tools=tools, add_generation_prompt=False, **extra) == prompt:
        # the template writes its generation prompt whatever add_generation_prompt says (Command R7B): cut the
        # next turn's opening the call turn ends with (the tail it shares with the prompt), at a token's start
        k = 0
        while k < min(len(full), len(prompt)) and full[-1 - k] == prompt[-1 - k]:
            k += 1
        while k and full[len(full) - k] != "<":
            k -= 1
        full = full[: len(full) - k]
    return full, prompt


def _rendered_call(style: Style, template: ChatTemplate, conversation: Conversation) -> str:
    """The call text the template writes for :data:`CALL_TURN`."""
    return _strip_end(_after_generation_prompt(*render_turn(style, template, conversation, CALL_TURN)))


def _trigger_starts(style: Style, text: str) -> Iterator[int]:
    """Where the dialect's ``auto`` triggers (which start its calls grammar) occur in ``text``."""
    auto = style.plan(Conversation(messages=[QUESTION], tools=[WEATHER]))
    for trigger in auto.grammar_triggers:
        if trigger["type"] == "word":
            at = text.find(trigger["value"])
            if at >= 0:
                yield at
        elif trigger["type"] in ("pattern", "pattern_full"):
            found = re.search(trigger["value"], text, re.MULTILINE)
            if found:
                yield found.start(found.lastindex or 0)


def measure(filename: str) -> Outcome:
    """The round trip on one template; see the module docstring."""
    source = (TEMPLATES / filename).read_text(encoding="utf-8")
    template = ChatTemplate(source, bos_token="<s>", eos_token="</s>", name=filename)
    style = _style_for(source, template)
    conversation = Conversation(messages=[QUESTION], tools=[WEATHER], tool_choice="required")
    try:
        text = _rendered_call(style, template, conversation)
    except TemplateError as e:
        return Outcome(NO_RENDERING, f"the template raises: {e}", style.name)
    if "get_weather" not in text or "Paris" not in text:
        return Outcome(NO_RENDERING, "the call's name or arguments are not in the assistant turn", style.name)
    if type(style) is fallback_style():
        return Outcome(GENERIC, "detection finds no dialect for the template", style.name, text)
    plan = style.plan(conversation)
    assert plan.grammar is not None and not plan.grammar_lazy, "required mode must constrain from the first token"
    starts = [0, len(text) - len(text.lstrip()), *_trigger_starts(style, text)]
    accepted = [at for at in starts if accepts(plan.grammar, text[at:])]
    if not accepted:
        return Outcome(GRAMMAR_REJECTS, "the required-mode grammar rejects the call text", style.name, text)
    lead = text[: accepted[0]]
    plan.parser.feed(text)
    plan.parser.finish()
    calls = [(c.name, json.loads(c.arguments)) for c in plan.parser.result().tool_calls]
    if calls != [("get_weather", ARGUMENTS)]:
        return Outcome(PARSER_DIFFERS, f"the parser reads {calls}", style.name, text)
    return Outcome(COVERED, f"grammar from the trigger on, after {lead!r}" if lead else "", style.name, text)


_measured: dict[str, Outcome] = {}


def outcome(filename: str) -> Outcome:
    if filename not in _measured:
        _measured[filename] = measure(filename)
    return _measured[filename]


def test_the_templates_are_there():
    assert TEMPLATES.is_dir() and TEMPLATE_FILES, f"llama.cpp templates missing at {TEMPLATES}: run `make setup`"
    assert not set(KNOWN_UNCOVERED) - set(TEMPLATE_FILES), "KNOWN_UNCOVERED names templates that do not exist"


@pytest.mark.parametrize("filename", TEMPLATE_FILES)
def test_template_round_trip(filename: str) -> None:
    result = outcome(filename)
    known = KNOWN_UNCOVERED.get(filename)
    if known is None:
        assert result.kind == COVERED, (f"{filename} [{result.dialect}] is not covered: {result.kind}: "
                                        f"{result.detail}\ncall text: {result.text!r}")
    else:
        assert result.kind != COVERED, (f"{filename} is covered by {result.dialect} now: "
                                        "take it off KNOWN_UNCOVERED")
        assert known.split(":")[0] == result.kind, (f"{filename}: KNOWN_UNCOVERED says {known!r}, measured "
                                                    f"{result.kind}: {result.detail}")


def test_covered_templates_are_declared_by_their_dialect() -> None:
    """The dialect covering a template lists it in its samples, so the README's table (written from the samples
    by scripts/dialect_table.py) names exactly the covered templates."""
    declared = {t: cls.name for cls in sampled_styles() if cls.samples is not None and cls is not fallback_style()
                for t in (*cls.samples.templates, *cls.samples.also_detected)}
    undeclared = {f: r.dialect for f in TEMPLATE_FILES if (r := outcome(f)).kind == COVERED
                  and declared.get(f) != r.dialect}
    assert not undeclared, f"covered but not in the covering dialect's samples (templates, also_detected): {undeclared}"
    stale = {f: d for f, d in declared.items()
             if f in KNOWN_UNCOVERED and not KNOWN_UNCOVERED[f].startswith(NO_RENDERING)}
    assert not stale, f"declared by a dialect but not covered: {stale}"


def test_coverage_summary(capsys: pytest.CaptureFixture[str]) -> None:
    results = {f: outcome(f) for f in TEMPLATE_FILES}
    rendering = [f for f, r in results.items() if r.kind != NO_RENDERING]
    covered = [f for f, r in results.items() if r.kind == COVERED]
    by_dialect: dict[str, list[str]] = {}
    for f in covered:
        by_dialect.setdefault(results[f].dialect, []).append(f)
    with capsys.disabled():
        print(f"\ntemplate coverage: {len(results)} templates, {len(rendering)} render tool calls, "
              f"{len(covered)} covered")
        for dialect, files in sorted(by_dialect.items()):
            print(f"  {dialect}: {', '.join(files)}")
        for f in covered:
            if results[f].detail:
                print(f"  ({f}: {results[f].detail})")
    assert len(covered) + len(KNOWN_UNCOVERED) == len(results)
