"""Prompt helpers the dialects share: the chat template's render, history reshaping, oaiproxy's own prompt texts.

A dialect reaches the model through the chat template: with its own ``tools``
support (:func:`history_for_template` keeps calls and results as messages) or,
for a template that knows no tools, with calls and results spelled out as text
(:func:`history_as_text`, the one place that says how a tool result reads as a
user turn). oaiproxy's own prompt texts (``templates/tools-*.jinja``,
``response-format.jinja``) render in the same sandbox as chat templates
(:class:`~oaiproxy.templating.chat_template.ChatTemplate`), not in a second one.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from oaiproxy.conversation.model import THINKING_SWITCHES, Conversation, ToolSpec
from oaiproxy.dialects.base import StyleError
from oaiproxy.dialects.reasoning import THINKING_BLOCK, reasoning_fields
from oaiproxy.resources import read_text
from oaiproxy.templating.chat_template import ChatTemplate, TemplateError


def openai_tool(spec: ToolSpec) -> dict[str, Any]:
    """A tool as chat templates expect it (the OpenAI request shape)."""
    return {
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": spec.parameters},
    }


def response_schema(conversation: Conversation) -> dict[str, Any] | None:
    """The JSON Schema the answer's content must follow, or None for free text."""
    fmt = conversation.response_format
    if fmt.type == "json_object":
        return {"type": "object"}
    if fmt.type == "json_schema":
        return fmt.schema if fmt.schema is not None else {}
    return None


def render(template: ChatTemplate, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
           **extra: Any) -> str:
    """Render through the chat template; a template's own refusal becomes a StyleError on ``messages``."""
    try:
        return template.render(messages, tools=tools or None, add_generation_prompt=True, **extra)
    except TemplateError as e:
        raise StyleError(f"the chat template refused this conversation: {e}", param="messages") from e


#: templates that spell ``reasoning_effort`` their own way: a text found in the template -> OpenAI's effort -> the
#: template's word (Hunyuan 3 knows only no_think/low/high and raises on anything else)
EFFORT_SPELLINGS: dict[str, dict[str, str]] = {
    "'no_think'": {"none": "no_think", "minimal": "low", "medium": "high"},
}


def template_variables(conversation: Conversation, thinking_template: bool, source: str = "") -> dict[str, Any]:
    """The chat-template variables a request sets: ``chat_template_kwargs`` as given, the
    client's ``reasoning_effort`` (gpt-oss, Cohere, Solar... read it; spelled as the template
    ``source`` wants it, :data:`EFFORT_SPELLINGS`), and, for a thinking template, its switches
    (``enable_thinking``, ``thinking``) saying whether to think, unless the client set them: on by
    default, as llama-server renders them."""
    variables: dict[str, Any] = {}
    if conversation.reasoning_effort is not None:
        effort = conversation.reasoning_effort
        for marker, spelling in EFFORT_SPELLINGS.items():
            if marker in source:
                effort = spelling.get(effort, effort)
        variables["reasoning_effort"] = effort
    if thinking_template:
        variables.update(dict.fromkeys(THINKING_SWITCHES, conversation.thinking))
    variables.update(conversation.template_kwargs)
    return variables


def with_reasoning_fields(template: ChatTemplate, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Past reasoning (``reasoning_content``) where ``template`` reads it: under the message
    fields it renders (``reasoning``, ``thinking``...), or as a leading thinking content block
    (Mistral's ``[THINK]``); dropped for a template that renders none (it would be ignored anyway).
    """
    if not any(m.get("reasoning_content") for m in messages):
        return messages
    fields = reasoning_fields(template.source)
    out = []
    for m in messages:
        text = m.get("reasoning_content")
        if text is None or m.get("role") != "assistant":
            out.append(m)
            continue
        m = {k: v for k, v in m.items() if k != "reasoning_content"}
        for name in fields:
            if name == THINKING_BLOCK:
                blocks = [{"type": "thinking", "thinking": text}]
                if m.get("content"):
                    blocks.append({"type": "text", "text": m["content"]})
                m["content"] = blocks
            else:
                m[name] = text
        out.append(m)
    return out


def history_for_template(
    messages: Sequence[dict[str, Any]],
    map_call_id: Callable[[str], str] | None = None,
) -> list[dict[str, Any]]:
    """Copy messages for a chat template: no None content, tool results named, ids as the dialect needs.

    Arguments stay JSON strings: ChatTemplate hands them to templates as objects itself.
    """
    out: list[dict[str, Any]] = []
    names_by_id: dict[str, str] = {}
    for message in messages:
        m = copy.deepcopy(dict(message))
        if m.get("content") is None:
            m["content"] = ""
        if m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                call = dict(call)
                fn = dict(call.get("function") or {})
                if not isinstance(fn.get("arguments"), str):
                    fn["arguments"] = json.dumps(fn.get("arguments"))
                call["function"] = fn
                call.setdefault("type", "function")
                if call.get("id"):
                    names_by_id[call["id"]] = fn.get("name", "")
                    if map_call_id:
                        call["id"] = map_call_id(call["id"])
                calls.append(call)
            m["tool_calls"] = calls
        elif "tool_calls" in m:
            del m["tool_calls"]
        if m.get("role") == "tool":
            original = m.get("tool_call_id")
            if original and "name" not in m and original in names_by_id:
                m["name"] = names_by_id[original]
            if original and map_call_id:
                m["tool_call_id"] = map_call_id(original)
        out.append(m)
    return out


def with_system_text(messages: list[dict[str, Any]], text: str, supports_system_role: bool) -> list[dict[str, Any]]:
    """Put ``text`` in front of the system message (or first user message when the template has no system role)."""
    messages = [dict(m) for m in messages]
    if messages and messages[0].get("role") == "system":
        messages[0]["content"] = text + "\n\n" + (messages[0].get("content") or "")
    else:
        messages.insert(0, {"role": "system", "content": text})
    if not supports_system_role:
        messages = merge_system_into_user(messages)
    return messages


def merge_system_into_user(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold system messages into the next user message, for templates that only know user/assistant."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []
    for m in messages:
        if m.get("role") == "system":
            pending.append(m.get("content") or "")
            continue
        if pending and m.get("role") == "user":
            m = dict(m)
            m["content"] = "\n\n".join(pending + [m.get("content") or ""])
            pending = []
        out.append(m)
    if pending:
        out.insert(0, {"role": "user", "content": "\n\n".join(pending)})
    return out


@functools.cache
def _own_template(name: str) -> ChatTemplate:
    return ChatTemplate(read_text("templates", name), name=f"templates/{name}")


def render_prompt_text(name: str, **values: Any) -> str:
    """Render one of oaiproxy's own prompt templates (``templates/<name>``), stripped."""
    tools = values.pop("tools", None)
    return _own_template(name).render([], tools=tools, add_generation_prompt=False, **values).strip()


def schema_note(schema: dict[str, Any]) -> str:
    """The instruction to answer with JSON following ``schema`` (``templates/response-format.jinja``)."""
    return render_prompt_text("response-format.jinja", schema=schema)


# -- a history as plain text -------------------------------------------------------------


@dataclass(frozen=True)
class PastCall:
    """A call from the history: its name, its arguments as JSON text, the client's id."""

    name: str
    arguments: str
    id: str


def tool_result_text(name: str, content: str) -> str:
    """A tool result as the user turn that reports it (for templates without a tool role)."""
    return f"Result of the call to {name or 'the tool'}:\n{content}"


def history_as_text(
    messages: Sequence[dict[str, Any]],
    write_calls: Callable[[str, list[PastCall]], str],
    write_answer: Callable[[str], str] | None = None,
) -> list[dict[str, Any]]:
    """A history any template can render: only system, user and assistant turns, all text.

    An assistant turn with calls becomes ``write_calls(content, calls)``, a plain
    assistant answer ``write_answer(content)`` (unchanged without it), a tool
    result a user turn (:func:`tool_result_text`) merged with a user turn next
    to it.
    """
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for m in messages:
        role = m.get("role")
        content = m.get("content") or ""
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                fn = call.get("function") or {}
                args = fn.get("arguments", "{}")
                calls.append(PastCall(fn.get("name", ""), args if isinstance(args, str) else json.dumps(args),
                                      call.get("id", "")))
                names[call.get("id", "")] = fn.get("name", "")
            m = {"role": "assistant", "content": write_calls(content, calls)}
        elif role == "assistant" and write_answer is not None:
            m = {"role": "assistant", "content": write_answer(content)}
        elif role == "tool":
            name = m.get("name") or names.get(m.get("tool_call_id", ""), "")
            m = {"role": "user", "content": tool_result_text(name, content)}
        else:
            m = {"role": role, "content": content}
        if out and out[-1]["role"] == m["role"] == "user":
            out[-1] = {"role": "user", "content": out[-1]["content"] + "\n\n" + m["content"]}
        else:
            out.append(m)
    return out


def one_call_per_turn(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each call of an assistant message in its own assistant turn, the content with the first.

    For templates that write only the first call of a turn (GigaChat's) or refuse more (Llama's).
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        calls = m.get("tool_calls") or []
        if m.get("role") == "assistant" and len(calls) > 1:
            out.extend({**m, "content": m.get("content", "") if k == 0 else "", "tool_calls": [call]}
                       for k, call in enumerate(calls))
        else:
            out.append(m)
    return out


__all__ = ["PastCall", "history_as_text", "history_for_template", "merge_system_into_user", "one_call_per_turn",
           "openai_tool", "render", "render_prompt_text", "response_schema", "schema_note", "template_variables",
           "tool_result_text", "with_reasoning_fields", "with_system_text"]
