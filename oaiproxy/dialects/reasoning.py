"""Which reasoning ("thinking") format a chat template uses, and how a prompt opens or closes it.

A thinking model writes a reasoning section before its answer, between two markers
(:class:`~oaiproxy.dialects.base.Reasoning`). The markers differ per model family
(:data:`MARKERS`); a template uses a family when its source holds the family's marker
texts *and* it treats reasoning as such: it renders a past turn's reasoning (reads a
reasoning field of a message, or a thinking content block), prefills the opener in its
generation prompt, or writes a closed, empty block when thinking is off. Templates that
only mention ``<think>`` in an instruction text are not thinking templates.

The engine generates the reasoning apart from the answer (docs/reasoning.md);
:func:`reasoning_prompt` says where a rendered prompt stands (reasoning opened, closed,
or neither) and gives the prompt the first phase starts from.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from oaiproxy.dialects.base import Reasoning
from oaiproxy.templating.chat_template import ChatTemplate, TemplateError


@dataclass(frozen=True)
class MarkerFamily:
    """One reasoning format: its markers, the source texts that reveal it, the templates known to use it."""

    name: str
    reasoning: Reasoning
    #: every one of these must occur in the template source
    needles: tuple[str, ...]
    #: real llama.cpp templates of this family (for docs and tests; detection reads the source)
    templates: tuple[str, ...] = ()


#: the reasoning formats, most specific first (``<think>`` last: other families contain it)
MARKERS: tuple[MarkerFamily, ...] = (
    MarkerFamily("harmony", Reasoning("<|channel|>analysis<|message|>", "<|end|>", "<|start|>assistant"),
                 ("<|channel|>", "analysis", "<|message|>"),
                 ("openai-gpt-oss-120b.jinja", "llm-jp-llm-jp-4.1-8b-thinking.jinja")),
    MarkerFamily("Solar Open", Reasoning("<|think|>", "<|end|>", "<|begin|>assistant"),
                 ("<|begin|>assistant<|think|>",), ("upstage-Solar-Open-100B.jinja",)),
    MarkerFamily("muse (ATEM)", Reasoning(" to=self<|message|>", "<|eom|>", "<|start|>assistant"),
                 ("<|start|>assistant to=self<|message|>", "<|eom|>"), ("muse-glimmer.jinja",)),
    MarkerFamily("Kimi K3", Reasoning("<|open|>think<|sep|>", "<|close|>think<|sep|>", "<|open|>response<|sep|>"),
                 ("<|open|>", "<|close|>", "open_tag('think')"), ("Kimi-K3.jinja",)),
    MarkerFamily("Gemma 4", Reasoning("<|channel>thought\n", "<channel|>"), ("<|channel>thought", "<channel|>"),
                 ("google-gemma-4-31B-it.jinja", "google-gemma-4-31B-it-interleaved.jinja")),
    MarkerFamily("Cohere", Reasoning("<|START_THINKING|>", "<|END_THINKING|>"),
                 ("<|START_THINKING|>", "<|END_THINKING|>"),
                 ("Cohere2MoE.jinja", "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja")),
    MarkerFamily("Seed", Reasoning("<seed:think>", "</seed:think>"), ("<seed:think>", "</seed:think>"),
                 ("ByteDance-Seed-OSS.jinja",)),
    MarkerFamily("MiniMax M3", Reasoning("<mm:think>", "</mm:think>"), ("<mm:think>", "</mm:think>"),
                 ("MiniMax-M3.jinja",)),
    MarkerFamily("Hunyuan", Reasoning("<think:opensource>", "</think:opensource>"),
                 ("'<think{}>'.format(HYTK)", "':opensource'"), ("tencent-Hy3.jinja",)),
    MarkerFamily("Mistral [THINK]", Reasoning("[THINK]", "[/THINK]"), ("[THINK]", "[/THINK]"),
                 ("mistralai-Ministral-3-14B-Reasoning-2512.jinja",)),
    MarkerFamily("Apriel 1.6", Reasoning("Here are my reasoning steps:\n", "[BEGIN FINAL RESPONSE]"),
                 ("Here are my reasoning steps:", "[BEGIN FINAL RESPONSE]"),
                 ("Apriel-1.6-15b-Thinker-fixed.jinja",)),
    MarkerFamily("<thinking>", Reasoning("<thinking>", "</thinking>"), ("<thinking>", "</thinking>"),
                 ("unsloth-Apriel-1.5.jinja",)),
    MarkerFamily("<think>", Reasoning("<think>", "</think>"), ("<think>", "</think>")),
)

#: the message fields templates read a past turn's reasoning from, in the order they are tried
REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking", "thought")
#: the pseudo-field of templates that read reasoning as a ``{"type": "thinking", "thinking": …}`` content block
THINKING_BLOCK = "content:thinking"

_PROBE_USER: dict[str, Any] = {"role": "user", "content": "Hello"}
_PROBE_REASONING = "PROBE-REASONING-7f3a"
_PROBE_CALL: dict[str, Any] = {"id": "call00001", "type": "function", "function": {"name": "probe", "arguments": "{}"}}
_PROBE_RESULT: dict[str, Any] = {"role": "tool", "tool_call_id": "call00001", "name": "probe", "content": "ok"}


def _family(source: str) -> MarkerFamily | None:
    return next((f for f in MARKERS if all(n in source for n in f.needles)), None)


def _render(template: ChatTemplate, messages: list[dict[str, Any]], **variables: Any) -> str:
    try:
        return template.render(messages, add_generation_prompt=messages[-1]["role"] != "assistant",
                               **variables)
    except TemplateError:
        return ""


@functools.lru_cache(maxsize=256)
def reasoning_fields(source: str) -> tuple[str, ...]:
    """How ``source`` reads a past assistant turn's reasoning: the message fields it renders
    (:data:`REASONING_FIELDS`), or :data:`THINKING_BLOCK`; empty when it renders none."""
    template = ChatTemplate(source, bos_token="<s>", eos_token="</s>", name="reasoning probe")
    fields: list[str] = []
    for name in REASONING_FIELDS:
        if name not in source:
            continue
        answer: dict[str, Any] = {"role": "assistant", "content": "Hi.", name: _PROBE_REASONING}
        call: dict[str, Any] = {"role": "assistant", "content": "", "tool_calls": [_PROBE_CALL],
                                name: _PROBE_REASONING}
        histories: list[list[dict[str, Any]]] = [[_PROBE_USER, answer], [_PROBE_USER, call, _PROBE_RESULT]]
        # some templates render reasoning only on a plain answer, others only on the calls of the current turn
        if any(_PROBE_REASONING in _render(template, history) for history in histories):
            fields.append(name)
    if not fields and "'thinking'" in source:
        blocks = [{"type": "thinking", "thinking": _PROBE_REASONING}, {"type": "text", "text": "Hi."}]
        if _PROBE_REASONING in _render(template, [_PROBE_USER, {"role": "assistant", "content": blocks}]):
            fields.append(THINKING_BLOCK)
    return tuple(fields)


@functools.lru_cache(maxsize=256)
def detect_reasoning(source: str) -> Reasoning | None:
    """The reasoning format of a chat template, or None when it is not a thinking template.

    A template is one when its source holds a family's markers (:data:`MARKERS`) and it
    renders past reasoning, prefills the opener (thinking on) or closes an empty block
    (thinking off); see the module docstring.
    """
    family = _family(source)
    if family is None:
        return None
    reasoning = family.reasoning
    if reasoning_fields(source):
        return reasoning
    template = ChatTemplate(source, bos_token="<s>", eos_token="</s>", name="reasoning probe")
    for thinking in (True, False):
        prompt = _render(template, [_PROBE_USER], enable_thinking=thinking, thinking=thinking)
        if prompt and prompt_state(prompt, reasoning) != "none":
            return reasoning
    return None


def prompt_state(prompt: str, reasoning: Reasoning) -> str:
    """Where a rendered generation prompt stands: "open" (it ends with the opener: the model
    writes its reasoning next), "closed" (it ends with an empty, closed block: thinking off)
    or "none" (neither: the proxy opens or closes the block itself).

    With a ``resume`` that is an assistant header (harmony's ``<|start|>assistant``, which also
    comes before the opener) a prompt ending with it is "none"; with one that opens the answer
    itself (Kimi K3's ``<|open|>response<|sep|>``) it is "closed"."""
    tail = prompt.rstrip()
    if tail.endswith(reasoning.opener.rstrip()):
        return "open"
    closed = (reasoning.closer + reasoning.resume).rstrip()
    if reasoning.resume and "assistant" not in reasoning.resume and tail.endswith(reasoning.resume.rstrip()):
        return "closed"  # a resume that opens the answer itself (Kimi K3's response tag): the template skipped thinking
    if reasoning.resume:  # the closer alone ends every message there (harmony): only an empty block counts
        before = tail[: len(tail) - len(closed)].rstrip() if tail.endswith(closed) else ""
        return "closed" if before.endswith(reasoning.opener.rstrip()) else "none"
    return "closed" if tail.endswith(closed) else "none"


def reasoning_prompt(prompt: str, reasoning: Reasoning, thinking: bool) -> tuple[str, bool]:
    """The prompt to generate from, and whether a reasoning phase runs first.

    Thinking on: a prompt that already opens the reasoning is kept, one the template closed
    (its own thinking switch) is kept without a phase, any other gets the opener. Thinking
    off: an opened reasoning is closed at once, a prompt without any block gets an empty
    one, so the model answers straight away.
    """
    state = prompt_state(prompt, reasoning)
    if state == "closed":
        return prompt, False
    if thinking:
        return (prompt if state == "open" else prompt + reasoning.opener), True
    opened = prompt if state == "open" else prompt + reasoning.opener
    return opened + reasoning.closer + reasoning.resume, False


__all__ = ["MARKERS", "REASONING_FIELDS", "THINKING_BLOCK", "MarkerFamily", "detect_reasoning", "prompt_state",
           "reasoning_fields", "reasoning_prompt"]
