"""An Anthropic Messages request as the one :class:`Conversation` every later stage reads.

Only renaming and reshaping live here; the rules the result must satisfy are
:func:`oaiproxy.conversation.checks.check_conversation`'s, the same for every API surface,
and :meth:`Translation.renamed` puts the fields its errors name back in this API's terms.

The reshaping, as Anthropic defines the turns:

- ``system`` (a string or text blocks) is the first, system message;
- consecutive turns of one role are one turn (Anthropic merges them too), their texts
  joined by a blank line;
- a user turn's ``tool_result`` blocks become tool messages answering their ``tool_use_id``
  (named after the call they answer, for templates that print the name), before the turn's
  text; ``is_error`` results say so in their text (``Error: ...``), as no chat template has a
  field for it;
- an assistant turn's ``tool_use`` blocks become its tool calls, their ``input`` the arguments,
  and its ``thinking`` blocks its ``reasoning_content`` (the model's template decides whether a past
  turn's reasoning is rendered; ``redacted_thinking`` has nothing readable and is dropped);
- ``thinking`` is off unless asked for, as in Anthropic's API (``reasoning_effort`` "none" for the
  engine); ``{"type": "enabled", "budget_tokens": N}`` turns it on with the smallest reasoning effort
  whose budget holds N tokens (``--reasoning-budget`` still bounds it; see docs/reasoning.md);
- ``tool_choice`` ``any`` is the conversation's "required", ``tool`` a named choice, and
  ``disable_parallel_tool_use`` turns parallel calls off;
- ``output_config.format`` (structured outputs) is the conversation's json_schema response format.

Blocks oaiproxy cannot read (images, documents) are a 400 naming the block.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oaiproxy.api.messages.protocol import (
    CountTokensRequest,
    ImageBlockParam,
    MessageParam,
    MessagesRequest,
    OtherBlockParam,
    RedactedThinkingBlockParam,
    TextBlockParam,
    ThinkingAdaptive,
    ThinkingBlockParam,
    ThinkingDisabled,
    ThinkingEnabled,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolResultBlockParam,
    ToolUseBlockParam,
)
from oaiproxy.conversation.checks import check_conversation
from oaiproxy.conversation.model import Conversation, NamedToolChoice, ResponseFormat, ToolChoice, ToolSpec
from oaiproxy.engine import Sampling
from oaiproxy.errors import APIError, BadRequest
from oaiproxy.settings import REASONING_EFFORT_BUDGETS

#: how merged turns' texts are joined
TURN_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Origin:
    """Where one conversation message came from in the request: the message (or ``system``), and
    the ``tool_use`` block of each of its tool calls."""

    message: str
    calls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Translation:
    """The conversation and sampling for one request, and how to name its fields in errors."""

    conversation: Conversation
    sampling: Sampling
    origins: tuple[Origin, ...]

    def param(self, param: str | None) -> str | None:
        """A conversation-level ``param`` (Chat Completions names, see checks.py) in this request's terms."""
        return anthropic_param(param, self.origins)

    def renamed(self, exc: APIError) -> APIError:
        """``exc`` with its ``param``, and the field names in its message, in this request's terms."""
        return _renamed(exc, self.origins)


_TOOL_FIELD = re.compile(r"^tools\[(\d+)\]\.function(?:\.(parameters|name))?")
_CALL_FIELD = re.compile(r"^messages\[(\d+)\]\.tool_calls\[(\d+)\](?:\.function\.arguments|\.function|)")
_MESSAGE = re.compile(r"^messages\[(\d+)\]")
_FORMAT = re.compile(r"^response_format\.json_schema\.schema")


def anthropic_param(param: str | None, origins: Sequence[Origin]) -> str | None:
    """``tools[2].function.parameters`` → ``tools[2].input_schema``; ``messages[3].tool_calls[0]...`` →
    the ``tool_use`` block it came from; a conversation message → the request message it came from."""
    if param is None:
        return None

    def tool(m: re.Match[str]) -> str:
        field = {"parameters": ".input_schema", "name": ".name", None: ""}[m.group(2)]
        return f"tools[{m.group(1)}]{field}"

    def call(m: re.Match[str]) -> str:
        i, j = int(m.group(1)), int(m.group(2))
        if i < len(origins) and j < len(origins[i].calls):
            return origins[i].calls[j] + (".input" if m.group(0).endswith("arguments") else "")
        return m.group(0)

    def message(m: re.Match[str]) -> str:
        i = int(m.group(1))
        return origins[i].message if i < len(origins) else m.group(0)

    def output(m: re.Match[str]) -> str:
        return "output_config.format.schema"

    for pattern, repl in ((_TOOL_FIELD, tool), (_CALL_FIELD, call), (_MESSAGE, message), (_FORMAT, output)):
        renamed, n = pattern.subn(repl, param, count=1)
        if n:
            return renamed
    return param


def _renamed(exc: APIError, origins: Sequence[Origin]) -> APIError:
    old = exc.param
    new = anthropic_param(old, origins)
    if old and new and new != old:
        exc.message = exc.message.replace(old, new)
        exc.param = new
    if exc.param == "tool_choice":
        exc.message = exc.message.replace("tool_choice 'required'", "tool_choice 'any'").replace(
            "names function", "names tool")
    return exc


# ---------------------------------------------------------------- messages


def _text(blocks: Sequence[TextBlockParam | ImageBlockParam], where: str) -> str:
    pieces = []
    for j, block in enumerate(blocks):
        if isinstance(block, ImageBlockParam):
            raise BadRequest("image blocks are not supported: oaiproxy serves text models; send text",
                             param=f"{where}[{j}]", code="unsupported_content")
        pieces.append(block.text)
    return "".join(pieces)


def _unsupported(block: OtherBlockParam | ImageBlockParam, where: str) -> BadRequest:
    why = ("oaiproxy serves text models; send text" if isinstance(block, ImageBlockParam)
           else "it needs a service oaiproxy does not run")
    return BadRequest(f"'{block.type}' blocks are not supported: {why}", param=where, code="unsupported_content")


@dataclass
class _Turn:
    role: str
    texts: list[str]
    thinking: list[str]
    results: list[tuple[dict[str, str], str]]  # tool message, where
    calls: list[tuple[dict[str, Any], str]]  # tool call, where
    where: str


def _read_turn(i: int, msg: MessageParam, call_names: dict[str, str]) -> _Turn:
    where = f"messages[{i}]"
    turn = _Turn(msg.role, [], [], [], [], where)
    if isinstance(msg.content, str):
        turn.texts.append(msg.content)
        return turn
    texts: list[str] = []
    for j, block in enumerate(msg.content):
        at = f"{where}.content[{j}]"
        if isinstance(block, TextBlockParam):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlockParam):
            call_names[block.id] = block.name
            turn.calls.append(({"id": block.id, "type": "function",
                                "function": {"name": block.name,
                                             "arguments": json.dumps(block.input, ensure_ascii=False)}}, at))
        elif isinstance(block, ToolResultBlockParam):
            text = block.content if isinstance(block.content, str) else _text(block.content, f"{at}.content")
            if block.is_error:
                text = f"Error: {text}" if text else "Error"
            result = {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}
            if block.tool_use_id in call_names:
                result["name"] = call_names[block.tool_use_id]
            turn.results.append((result, at))
        elif isinstance(block, ThinkingBlockParam):
            turn.thinking.append(block.thinking)
        elif isinstance(block, RedactedThinkingBlockParam):
            continue
        else:
            raise _unsupported(block, at)
    if texts or not (turn.calls or turn.results):
        turn.texts.append("".join(texts))
    return turn


def _messages(req: CountTokensRequest) -> tuple[list[dict[str, Any]], list[Origin]]:
    messages: list[dict[str, Any]] = []
    origins: list[Origin] = []
    if req.system is not None:
        system = req.system if isinstance(req.system, str) else _text(req.system, "system")
        messages.append({"role": "system", "content": system})
        origins.append(Origin("system"))
    call_names: dict[str, str] = {}
    turns: list[_Turn] = []
    for i, msg in enumerate(req.messages):
        if msg.role == "system" and (not turns or turns[-1].role != "user"):
            raise BadRequest("a system message in 'messages' must follow a user turn (the first instructions "
                             "go in 'system')", param=f"messages[{i}].role", code="invalid_value")
        turn = _read_turn(i, msg, call_names)
        if turns and turns[-1].role == turn.role:  # Anthropic merges consecutive turns of one role
            last = turns[-1]
            last.texts += turn.texts
            last.thinking += turn.thinking
            last.results += turn.results
            last.calls += turn.calls
        else:
            turns.append(turn)
    for turn in turns:
        for result, at in turn.results:
            messages.append(result)
            origins.append(Origin(at))
        if turn.role == "assistant":
            out: dict[str, Any] = {"role": "assistant",
                                      "content": TURN_SEPARATOR.join(turn.texts) if turn.texts else None}
            if turn.calls:
                out["tool_calls"] = [call for call, _ in turn.calls]
            if turn.thinking:
                out["reasoning_content"] = TURN_SEPARATOR.join(turn.thinking)
            messages.append(out)
            origins.append(Origin(turn.where, tuple(at for _, at in turn.calls)))
        elif turn.texts:
            messages.append({"role": turn.role, "content": TURN_SEPARATOR.join(turn.texts)})
            origins.append(Origin(turn.where))
    return messages, origins


# ---------------------------------------------------------------- thinking


#: adaptive thinking's ``output_config.effort`` as the conversation's reasoning effort (Anthropic's two levels
#: above "high" have no bound of their own either)
ADAPTIVE_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def reasoning_effort(thinking: ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive | None,
                     effort: str | None = None) -> str:
    """Anthropic's ``thinking`` as the conversation's reasoning effort: "none" unless enabled or adaptive;
    enabled: the smallest effort whose budget (:data:`~oaiproxy.settings.REASONING_EFFORT_BUDGETS`) holds
    ``budget_tokens`` ("high": no budget of its own); adaptive: ``output_config.effort``, "high" by default
    as Anthropic's."""
    if isinstance(thinking, ThinkingAdaptive):
        return ADAPTIVE_EFFORTS[effort or "high"]
    if not isinstance(thinking, ThinkingEnabled):
        return "none"
    fitting = [(budget, effort) for effort, budget in REASONING_EFFORT_BUDGETS.items()
               if budget is not None and budget >= thinking.budget_tokens]
    return min(fitting)[1] if fitting else "high"


# ---------------------------------------------------------------- tools


def _tool_choice(req: CountTokensRequest, has_tools: bool) -> tuple[ToolChoice, bool]:
    """The conversation's tool choice and whether parallel calls are allowed."""
    choice = req.tool_choice
    if choice is None:
        return ("auto" if has_tools else "none"), True
    if isinstance(choice, ToolChoiceNone):
        return "none", True
    parallel = not choice.disable_parallel_tool_use
    if isinstance(choice, ToolChoiceAuto):
        return "auto", parallel
    if isinstance(choice, ToolChoiceAny):
        return "required", parallel
    assert isinstance(choice, ToolChoiceTool)
    return NamedToolChoice(choice.name), parallel


def to_translation(req: CountTokensRequest, *, tool_extra_keys: bool = False) -> Translation:
    """The request as a checked :class:`Conversation` and its :class:`Sampling` (a :class:`BadRequest`
    naming the request's own field otherwise).

    ``tool_extra_keys`` (``--tool-extra-keys``): as for Chat Completions, tool arguments may carry keys
    a schema does not declare only when this is on.
    """
    messages, origins = _messages(req)
    tools = [ToolSpec.from_request(t.name, t.description, t.input_schema or None, t.strict, extra_keys=tool_extra_keys)
             for t in req.tools or []]
    choice, parallel = _tool_choice(req, bool(tools))
    fmt = ResponseFormat()
    config = req.output_config if isinstance(req, MessagesRequest) else None
    output = config.format if config else None
    effort = reasoning_effort(req.thinking, config.effort if config else None)
    if output is not None:
        fmt = ResponseFormat(type="json_schema", schema=output.schema_, name="output")
    conv = Conversation(messages=messages, tools=tools, tool_choice=choice, parallel_tool_calls=parallel,
                        response_format=fmt, reasoning_effort=effort)
    try:
        conv = check_conversation(conv)
    except APIError as exc:
        raise _renamed(exc, origins) from None
    if isinstance(req, MessagesRequest):
        sampling = Sampling(max_tokens=req.max_tokens, temperature=req.temperature, top_p=req.top_p,
                            top_k=req.top_k, stop=tuple(req.stop_sequences or ()))
    else:
        sampling = Sampling(max_tokens=1)
    return Translation(conversation=conv, sampling=sampling, origins=tuple(origins))


__all__ = ["TURN_SEPARATOR", "Origin", "Translation", "anthropic_param", "reasoning_effort", "to_translation"]
