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
from oaiproxy.dialects.prompting import history_for_template, openai_tool
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
              "<|end_of_msg|>", "<SPECIAL_12>")

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
    # model formats no dialect speaks yet (detection falls back to the generic JSON envelope)
    "ByteDance-Seed-OSS.jinja": f"{GENERIC}: {_XML_PARAMETER} in <seed:tool_call>",
    "GLM-4.6.jinja": f"{GENERIC}: {_ARG_KEY}",
    "GLM-4.7-Flash.jinja": f"{GENERIC}: {_ARG_KEY}",
    "Spark2.5.jinja": f"{GENERIC}: {_ARG_KEY}",
    "inclusionai-ling-3.0-flash.jinja": f"{GENERIC}: {_ARG_KEY}",
    "poolside-Laguna-S-2.1.jinja": f"{GENERIC}: {_ARG_KEY}",
    "poolside-Laguna-XS-2.1.jinja": f"{GENERIC}: {_ARG_KEY}",
    "poolside-Laguna-XS.2.jinja": f"{GENERIC}: {_ARG_KEY}",
    "tencent-Hy3.jinja": f"{GENERIC}: {_ARG_KEY} with :opensource tags",
    "MiniMax-M2.jinja": f"{GENERIC}: {_INVOKE} in <minimax:tool_call>",
    "MiniMax-M3.jinja": f"{GENERIC}: {_INVOKE} with ]<]minimax[>[ separators",
    "deepseek-ai-DeepSeek-V3.2.jinja": f"{GENERIC}: {_INVOKE} (DSML)",
    "deepseek-ai-DeepSeek-V4-Flash-0731.jinja": f"{GENERIC}: {_INVOKE} (DSML)",
    "deepseek-ai-DeepSeek-V4.jinja": f"{GENERIC}: {_INVOKE} (DSML)",
    "muse-glimmer.jinja": f"{GENERIC}: {_INVOKE} (atem:)",
    "openbmb-MiniCPM5-1B.jinja": f"{GENERIC}: XML <function name=…><param name=…>",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": f"{GENERIC}: {_DEEPSEEK}",
    "deepseek-ai-DeepSeek-V3.1.jinja": f"{GENERIC}: {_DEEPSEEK}",
    "llama-cpp-deepseek-r1.jinja": f"{GENERIC}: {_DEEPSEEK}",
    "Kimi-K2-Instruct.jinja": f"{GENERIC}: {_KIMI}",
    "Kimi-K2-Thinking.jinja": f"{GENERIC}: {_KIMI}",
    "moonshotai-Kimi-K2.jinja": f"{GENERIC}: {_KIMI}",
    "Kimi-K3.jinja": f"{GENERIC}: special-token sections <|open|>call tool=…<|sep|> (Kimi K3)",
    "upstage-Solar-Open-100B.jinja": f"{GENERIC}: special-token sections <|tool_calls|><|tool_call:begin|>",
    "Apertus-8B-Instruct.jinja": f"{GENERIC}: special-token sections <|tools_prefix|>[{{NAME: ARGS}}]",
    "google-gemma-4-31B-it-interleaved.jinja": f"{GENERIC}: Gemma 4 <|tool_call>call:NAME{{k:<|\"|>v<|\"|>}}",
    "google-gemma-4-31B-it.jinja": f"{GENERIC}: Gemma 4 <|tool_call>call:NAME{{k:<|\"|>v<|\"|>}}",
    "llm-jp-llm-jp-4.1-8b-thinking.jinja": f"{GENERIC}: {_HARMONY}",
    "openai-gpt-oss-120b.jinja": f"{GENERIC}: {_HARMONY}",
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": f"{GENERIC}: {_MISTRAL_V11} with [CALL_ID]",
    "mistralai-Ministral-3-14B-Reasoning-2512.jinja": f"{GENERIC}: {_MISTRAL_V11}",
    "unsloth-mistral-Devstral-Small-2507.jinja": f"{GENERIC}: {_MISTRAL_V11}",
    "Cohere2MoE.jinja": f"{GENERIC}: {_COHERE} in <|START_ACTION|>",
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja": f"{GENERIC}: {_COHERE} in <|START_ACTION|>",
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": f"{GENERIC}: {_COHERE} after Action: ```json",
    "Apriel-1.6-15b-Thinker-fixed.jinja": f"{GENERIC}: {_JSON_LIST} <tool_calls>[…]</tool_calls>",
    "unsloth-Apriel-1.5.jinja": f"{GENERIC}: {_JSON_LIST} <tool_calls>[…]</tool_calls>",
    "NVIDIA-Nemotron-Nano-v2.jinja": f"{GENERIC}: {_JSON_LIST} <TOOLCALL>[…]</TOOLCALL>",
    "MiniMax-M1.jinja": f"{GENERIC}: JSON call lines in <tool_calls>",
    "fireworks-ai-llama-3-firefunction-v2.jinja": f"{GENERIC}: JSON call list after ' functools'",
    "GigaChat3-10B-A1.8B.jinja": f"{GENERIC}: JSON call in a 'function call' role turn",
    "GigaChat3.1-10B-A1.8B.jinja": f"{GENERIC}: JSON call after <|function_call|>",
    "LFM2.5-8B-A1B.jinja": f"{GENERIC}: {_PYTHONIC} in <|tool_call_start|>",
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


def _rendered_call(style: Style, template: ChatTemplate, conversation: Conversation) -> str:
    """The call text the template writes for :data:`CALL_TURN`, prepared as the dialect prepares a history."""
    map_call_id = style.map_call_id if isinstance(style, DialectStyle) else None
    extra: dict[str, Any] = style.render_extra(plan_tools(conversation)) if isinstance(style, DialectStyle) else {}
    tools = [openai_tool(WEATHER)]
    history = history_for_template([QUESTION, CALL_TURN], map_call_id)
    if isinstance(style, DialectStyle):
        history = style.adjust_history(history)
    full = template.render(history, tools=tools, add_generation_prompt=False, **extra)
    prompt = template.render(history[:1], tools=tools, add_generation_prompt=True, **extra)
    return _strip_end(_after_generation_prompt(full, prompt))


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
