"""What every dialect shares: tool selection, call ids, prompt helpers, and the streaming parser core.

Dialects differ in the text around a tool call, not in the bookkeeping: which
tools a request puts in play, how a schema error names its request field, how a
history is made palatable to a template, how trigger text is held back until it
is decided, and how call deltas are numbered and streamed. Keeping that here
lets each dialect module read as a description of its format.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import secrets
import string
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from jinja2.sandbox import ImmutableSandboxedEnvironment

from oaiproxy.templating.chat_template import TemplateError
from oaiproxy.grammar import SchemaError, gbnf_literal
from oaiproxy.resources import read_text
from oaiproxy.dialects._jsonscan import JsonScanError, JsonScanner, Path
from oaiproxy.conversation.model import Conversation, ToolCall, ToolSpec
from oaiproxy.conversation.tools import ToolPlan
from oaiproxy.dialects.base import ContentDelta, ParsedOutput, ParseEvent, StyleError, ToolCallDelta

_ALNUM = string.ascii_letters + string.digits


def new_call_id() -> str:
    """``call_`` + 24 random alphanumerics: unique per response, as OpenAI's are."""
    return "call_" + "".join(secrets.choice(_ALNUM) for _ in range(24))


def new_short_call_id() -> str:
    """Mistral's own id shape: 9 alphanumerics."""
    return "".join(secrets.choice(_ALNUM) for _ in range(9))


def short_call_id_for(call_id: str) -> str:
    """A stable 9-character id for a client's id, so a history renders the same every time."""
    if len(call_id) == 9 and call_id.isalnum() and call_id.isascii():
        return call_id
    digest = hashlib.sha256(call_id.encode()).digest()
    return "".join(_ALNUM[b % len(_ALNUM)] for b in digest[:9])


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


# -- grammar helpers ---------------------------------------------------------------------


def add_tool_args(builder: Any, plan: ToolPlan, prefix: str) -> dict[str, str]:
    """Add each tool's parameters schema to ``builder``; name -> rule for its arguments.

    The grammar is that of the schema as enforced for this tool (its ``strict`` and
    extra-keys setting), the same document :func:`oaiproxy.validation.validate_tool_calls`
    checks the answer against.
    """
    rules: dict[str, str] = {}
    for i, spec in plan.indexed:
        try:
            rules[spec.name] = builder.add_schema(spec.parameters, f"{prefix}-tool{i}-args",
                                                  objects=spec.objects, strict=spec.strict)
        except SchemaError as e:
            where = f"tools[{i}].function.parameters"
            raise StyleError(f"{where}: {e}", param=where) from e
    return rules


def add_response_schema(builder: Any, schema: dict[str, Any], name: str) -> str:
    """Add the response_format schema, naming the request field when the converter refuses it."""
    try:
        return builder.add_schema(schema, name)
    except SchemaError as e:
        where = "response_format.json_schema.schema"
        raise StyleError(f"{where}: {e}", param=where) from e


def repeat_rule(item: str, separator: str, max_items: int) -> str:
    """GBNF for 1..max_items of ``item`` separated by ``separator``."""
    if max_items <= 1:
        return item
    return f"{item} ( {separator} {item} ){{0,{max_items - 1}}}"


def lit(text: str) -> str:
    """A GBNF literal for exact text (through the converter's escaping)."""
    return gbnf_literal(text)


def json_call_body(name: str, args_rule: str, ws: str, args_key: str = "arguments", tail: str = "") -> str:
    """GBNF for ``{"name": "<name>", "<args_key>": <args>[tail]}`` with ``ws`` between tokens."""
    return (
        f'"{{" {ws} {lit(json.dumps("name"))} {ws} ":" {ws} {lit(json.dumps(name))} {ws} "," {ws} '
        f'{lit(json.dumps(args_key))} {ws} ":" {ws} {args_rule} {tail} {ws} "}}"'
    )


def define(builder: Any, name: str, body: str) -> str:
    """Add a rule under exactly ``name``, for rules other rules (and fragments) refer to by name.

    The builder reuses an existing rule when bodies are equal; a referenced name
    must exist as written, so an equal body is wrapped to make it distinct.
    """
    got = builder.add_rule(name, body)
    if got != name:
        got = builder.add_rule(name, f"( {body} )")
    if got != name:
        raise RuntimeError(f"grammar rule {name!r} could not be defined (the builder named it {got!r})")
    return name


def load_fragment(builder: Any, name: str) -> None:
    """Add the rules of ``grammars/<name>`` (``rule ::= body`` lines, ``#`` comments) to ``builder``."""
    text = read_text("grammars", name)
    current: list[str] | None = None
    rules: list[list[str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "::=" in line and not line[0].isspace():
            head, body = line.split("::=", 1)
            current = [head.strip(), body.strip()]
            rules.append(current)
        elif current is not None:
            current[1] += " " + stripped
    for rule_name, body in rules:
        define(builder, rule_name, body)


# -- prompt helpers ----------------------------------------------------------------------


def render(template: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, **extra: Any) -> str:
    """Render through the chat template; a template's own refusal becomes a StyleError on ``messages``."""
    try:
        return template.render(messages, tools=tools or None, add_generation_prompt=True, **extra)
    except TemplateError as e:
        raise StyleError(f"the chat template refused this conversation: {e}", param="messages") from e


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


_PROMPT_ENV = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
_PROMPT_ENV.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent)


@functools.cache
def _prompt_template(name: str) -> Any:
    return _PROMPT_ENV.from_string(read_text("templates", name))


def render_prompt_text(name: str, **values: Any) -> str:
    """Render one of oaiproxy's own prompt templates (``templates/<name>``) in a sandbox."""
    return _prompt_template(name).render(**values).strip()


# -- streaming parser core ---------------------------------------------------------------


def find_trigger(buf: str, triggers: Iterable[str]) -> tuple[int, str | None]:
    """Earliest complete trigger in ``buf`` -> (position, trigger); else (safe length, None).

    Without a complete trigger, the safe length stops before the longest tail of
    ``buf`` that could still grow into a trigger: that tail is held back.
    """
    best: tuple[int, str] | None = None
    for trig in triggers:
        pos = buf.find(trig)
        if pos >= 0 and (best is None or pos < best[0] or (pos == best[0] and len(trig) > len(best[1]))):
            best = (pos, trig)
    if best is not None:
        return best[0], best[1]
    hold = 0
    for trig in triggers:
        for k in range(min(len(trig) - 1, len(buf)), hold, -1):
            if buf.endswith(trig[:k]):
                hold = k
                break
    return len(buf) - hold, None


class _Call:
    __slots__ = ("index", "id", "name", "args", "announced")

    def __init__(self, index: int, call_id: str, name: str):
        self.index = index
        self.id = call_id
        self.name = name
        self.args: list[str] = []
        self.announced = False


class StreamParser:
    """Shared bookkeeping for the dialect parsers: content, numbered calls, event list.

    Subclasses implement :meth:`_run` (consume ``self._buf`` as far as decided)
    and :meth:`_end` (the text is over: flush or report what was held back).
    Every decision depends only on the text, never on where chunks were split.
    """

    def __init__(self) -> None:
        self._buf = ""
        self._events: list[ParseEvent] = []
        self._content: list[str] = []
        self._calls: list[_Call] = []
        self._finished = False
        #: set when the text ended inside a tool call (n_predict ran out)
        self.truncated = False

    # OutputParser protocol
    def feed(self, chunk: str) -> list[ParseEvent]:
        if self._finished:
            raise RuntimeError("feed() after finish()")
        self._buf += chunk
        self._run()
        return self._take()

    def finish(self) -> list[ParseEvent]:
        if not self._finished:
            self._finished = True
            self._run()
            self._end()
        return self._take()

    def result(self) -> ParsedOutput:
        content = "".join(self._content)
        calls = [ToolCall(c.id, c.name, "".join(c.args)) for c in self._calls]
        return ParsedOutput(content=content if content and (content.strip() or not calls) else None, tool_calls=calls)

    # helpers for subclasses
    def _take(self) -> list[ParseEvent]:
        events, self._events = self._events, []
        return _merge(events)

    def _emit_content(self, text: str) -> None:
        if text:
            self._content.append(text)
            self._events.append(ContentDelta(text))

    def _start_call(self, name: str, call_id: str | None = None) -> _Call:
        call = _Call(len(self._calls), call_id or new_call_id(), name)
        self._calls.append(call)
        call.announced = True
        self._events.append(ToolCallDelta(call.index, id=call.id, name=name))
        return call

    def _call_args(self, call: _Call, piece: str) -> None:
        if piece:
            call.args.append(piece)
            self._events.append(ToolCallDelta(call.index, arguments=piece))

    def _run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _end(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _merge(events: list[ParseEvent]) -> list[ParseEvent]:
    """Join neighbouring content pieces and argument pieces of one call: fewer, equal events."""
    out: list[ParseEvent] = []
    for ev in events:
        prev = out[-1] if out else None
        if isinstance(ev, ContentDelta) and isinstance(prev, ContentDelta):
            out[-1] = ContentDelta(prev.text + ev.text)
        elif (isinstance(ev, ToolCallDelta) and isinstance(prev, ToolCallDelta) and ev.index == prev.index
              and ev.id is None and ev.name is None):
            out[-1] = ToolCallDelta(prev.index, prev.id, prev.name, prev.arguments + ev.arguments)
        else:
            out.append(ev)
    return out


class CallObjectReader:
    """Follows one ``{"name": ..., "arguments": {...}}`` object inside a JSON scan and streams it as a call.

    ``prefix`` is the object's path in the scan. The call is announced as soon as
    its name is complete, then argument characters stream as they arrive; keys
    in another order are buffered until the name is known. With ``stream=False``
    (Mistral, whose id follows the arguments) the call is announced whole.
    """

    def __init__(
        self,
        parser: StreamParser,
        prefix: Path = (),
        args_keys: tuple[str, ...] = ("arguments",),
        id_key: str | None = None,
        stream: bool = True,
        make_id: Callable[[], str] = new_call_id,
    ) -> None:
        self._p = parser
        self._prefix = prefix
        self._n = len(prefix)
        self._args_keys = args_keys
        self._id_key = id_key
        self._stream = stream
        self._make_id = make_id
        self._name_raw: list[str] = []
        self._id_raw: list[str] = []
        self._args_raw: list[str] = []
        self._args_sent = 0
        self._name: str | None = None
        self._call: _Call | None = None
        self.done = False

    def on_char(self, ch: str, path: Path | None, completed: list[Path]) -> None:
        if path is not None and path[: self._n] == self._prefix and len(path) > self._n:
            key = path[self._n]
            if key == "name":
                self._name_raw.append(ch)
            elif key in self._args_keys:
                self._args_raw.append(ch)
            elif key == self._id_key:
                self._id_raw.append(ch)
        for done in completed:
            if done == self._prefix + ("name",):
                self._name = _loads_str("".join(self._name_raw))
        if self._stream and self._name is not None:
            if self._call is None:
                self._call = self._p._start_call(self._name, self._make_id())
            self._flush_args()
        if self._prefix in completed:
            self.done = True
            if self._call is None:
                self._call = self._p._start_call(self._name or "", self._take_id())
            self._flush_args()
            if not self._args_raw:  # a call without arguments: OpenAI still wants an object
                self._p._call_args(self._call, "{}")

    def abort(self) -> None:
        """The text ended inside this object: report whatever was written, marked truncated."""
        self._p.truncated = True
        if self._call is None:
            name = self._name if self._name is not None else _loads_str("".join(self._name_raw) + '"')
            self._call = self._p._start_call(name or "", self._take_id())
        self._flush_args()

    def _take_id(self) -> str:
        """The id the model wrote, unless it is empty or repeats an earlier call's id in this answer.

        The grammar cannot make ids distinct; the ids are the proxy's to give, and
        a repeated one would make two results indistinguishable, so it is replaced.
        """
        raw = "".join(self._id_raw)
        if self._id_key and raw:
            value = _loads_str(raw)
            if value and all(c.id != value for c in self._p._calls):
                return value
        return self._make_id()

    def _flush_args(self) -> None:
        assert self._call is not None
        piece = "".join(self._args_raw[self._args_sent:])
        self._args_sent = len(self._args_raw)
        self._p._call_args(self._call, piece)


def _loads_str(raw: str) -> str:
    try:
        value = json.loads(raw)
    except ValueError:
        return raw.strip('"')
    return value if isinstance(value, str) else str(value)


class JsonCallSection(StreamParser):
    """A parser for "content, then trigger, then JSON tool calls" dialects.

    Subclasses set ``triggers`` and implement :meth:`_section`, which consumes the
    text right after a trigger. This class provides content scanning with
    hold-back, and a helper to scan one JSON value char by char.
    """

    triggers: tuple[str, ...] = ()

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self._enabled = enabled
        self._mode = "content"
        self._scanner: JsonScanner | None = None
        self._reader: CallObjectReader | None = None
        #: a call announced outside a CallObjectReader, still being written
        self._open_call: _Call | None = None

    def _run(self) -> None:
        while self._buf:
            before = (self._mode, len(self._buf))
            if self._mode == "content":
                self._scan_content()
            elif self._mode == "after":
                self._after_call()
            else:
                self._section()
            if (self._mode, len(self._buf)) == before:
                return

    def _scan_content(self) -> None:
        if not self._enabled or not self.triggers:
            self._emit_content(self._buf)
            self._buf = ""
            return
        pos, trig = find_trigger(self._buf, self.triggers)
        self._emit_content(self._buf[:pos])
        if trig is None:
            self._buf = self._buf[pos:]
            return
        self._buf = self._buf[pos + len(trig):]
        self._enter(trig)

    def _enter(self, trigger: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _section(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _end(self) -> None:
        if self._mode == "content":
            self._emit_content(self._buf)
            self._buf = ""
        elif self._mode == "after":
            if self._buf.strip():
                self._emit_content(self._buf)
            self._buf = ""
        else:
            self._end_section()

    def _end_section(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _after_call(self) -> None:
        """Between calls: whitespace is dropped before another trigger, anything else is content."""
        stripped = self._buf.lstrip()
        if not stripped:
            return
        pos, trig = find_trigger(stripped, self.triggers)
        if trig is not None and pos == 0:
            self._buf = stripped[len(trig):]
            self._enter(trig)
        elif pos == 0:
            return  # could still become a trigger
        else:
            self._mode = "content"

    def _expect(self, literal: str) -> bool | None:
        """Consume optional whitespace then ``literal``: True done, False need more text, None mismatch."""
        stripped = self._buf.lstrip()
        if stripped.startswith(literal):
            self._buf = stripped[len(literal):]
            return True
        if literal.startswith(stripped):
            return False
        return None

    def _begin_json(self, trigger: str, reader: "CallObjectReader | None" = None) -> None:
        """Start scanning a JSON value right after ``trigger`` (kept to replay as text if it is not JSON)."""
        self._scanner = JsonScanner()
        self._raw = trigger
        self._reader = reader
        self._open_call = None

    def _scan_json(self, on_char: Callable[[str, Path | None, list[Path]], None]) -> bool | None:
        """Feed buffered characters to the current JSON scan; True once its value ended.

        Whitespace before the value is skipped. Text that is not JSON returns
        None after handling it: if no call was announced yet, the trigger and
        everything up to the offending character become content; a call already
        announced stays (with its broken arguments, for validation to report).
        """
        scanner = self._scanner
        assert scanner is not None
        i = 0
        buf = self._buf
        n = len(buf)
        try:
            while i < n and not scanner.done:
                ch = buf[i]
                i += 1
                path, completed = scanner.feed_char(ch)
                if scanner.rejected:
                    i -= 1
                    on_char("", None, completed)
                else:
                    on_char(ch, path, completed)
        except JsonScanError:
            self._raw += buf[:i]
            self._buf = buf[i:]
            reader = self._reader
            if reader is not None and reader._call is not None:
                self.truncated = True
                reader._flush_args()
            elif self._open_call is not None:
                self.truncated = True
            else:
                self._emit_content(self._raw)
            self._mode = "content"
            return None
        self._raw += buf[:i]
        self._buf = buf[i:]
        return scanner.done

    def _abort_json(self) -> None:
        """The text ended inside the JSON value: a value never begun is content, else a truncated call."""
        reader = self._reader
        if self._scanner is not None and not self._scanner.started or reader is None:
            self._emit_content(self._raw + self._buf)
        else:
            reader.abort()
        self._buf = ""


__all__ = [
    "CallObjectReader",
    "JsonCallSection",
    "JsonScanError",
    "JsonScanner",
    "StreamParser",
    "add_response_schema",
    "add_tool_args",
    "define",
    "find_trigger",
    "json_call_body",
    "lit",
    "history_for_template",
    "load_fragment",
    "new_call_id",
    "new_short_call_id",
    "openai_tool",
    "render",
    "render_prompt_text",
    "repeat_rule",
    "response_schema",
    "short_call_id_for",
    "with_system_text",
]
