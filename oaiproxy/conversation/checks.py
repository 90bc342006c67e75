"""Every rule a :class:`Conversation` must satisfy before a dialect reads it, checked in one place.

Each API surface translates its own request into a :class:`Conversation` and hands it to
:func:`check_conversation`; the dialects, the grammar and the validator then take the
conversation as given (:func:`oaiproxy.conversation.tools.plan_tools` only resolves). A
failure is a :class:`BadRequest` whose ``param`` uses the Chat Completions field names
(``tools[2].function.parameters``, ``tool_choice``): a surface with other names renames
them, as :mod:`oaiproxy.api.chat.legacy_functions` does for ``functions``.

An agent sends the same tools on every turn, so a tool that passed is remembered (:class:`ToolMemo`,
bounded): the next request with an equal tool skips its schema checks and gets the remembered
*canonical* :class:`ToolSpec` in its place, on which the plan cache and the prompt's tool texts key
by identity (:func:`tool_key`, :func:`tool_extras`) instead of reading 128 schemas again.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import operator
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import pydantic_core

from oaiproxy.conversation.model import (
    REASONING_EFFORTS,
    THINKING_SWITCHES,
    Conversation,
    NamedToolChoice,
    ResponseFormat,
    ToolSpec,
)
from oaiproxy.errors import BadRequest
from oaiproxy.grammar import SchemaError, enforced_schema

#: deepest nesting of a tool's parameters or a response schema; the converter's own limit is lower,
#: this one protects every walker (prompt builders, validators) from recursing without bound
MAX_SCHEMA_DEPTH = 100

#: deepest nesting of a history tool call's ``arguments`` JSON text: every style and template parses
#: it (``json.loads`` recurses), and no real call nests this deep
MAX_ARGUMENTS_DEPTH = 100


def check_depth(value: Any, param: str, limit: int = MAX_SCHEMA_DEPTH) -> None:
    """A 400 naming ``param`` when ``value`` nests deeper than ``limit``; iterative, so it cannot recurse."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise BadRequest(f"'{param}' is nested more than {limit} levels deep", param=param,
                             code="schema_too_deep")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def json_text_depth(text: str) -> int:
    """How deep ``[``/``{`` nest in JSON text (outside strings), without parsing it: iterative, linear."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def check_schema_for(schema: Any, param: str, what: str, *, objects: str = "open", strict: bool = False) -> None:
    """A 400 naming ``param`` (and ``what``: the tool) unless ``schema`` is a valid JSON Schema that the
    proxy can enforce as asked (``strict`` included), before any style or template walks it.

    The check is :func:`oaiproxy.grammar.enforced_schema` itself — the meta-schema (2020-12,
    draft 7, draft 4), then the rewriting the grammar and the validator share — so a schema
    that passes here is one both will read the same way.
    """
    try:
        enforced_schema(schema, objects=objects, strict=strict)  # type: ignore[arg-type]
    except SchemaError as e:
        raise BadRequest(f"{what}: {e}", param=param, code="invalid_schema") from None


def _check_history(conv: Conversation) -> None:
    for i, msg in enumerate(conv.messages):
        for j, call in enumerate(msg.get("tool_calls") or []):
            if json_text_depth(call["function"]["arguments"]) > MAX_ARGUMENTS_DEPTH:
                where = f"messages[{i}].tool_calls[{j}].function.arguments"
                raise BadRequest(f"'{where}' is nested more than {MAX_ARGUMENTS_DEPTH} levels deep",
                                 param=where, code="arguments_too_deep")

# --- the tool memo: checked tools, by their JSON -------------------------------------------------

_TOOL_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(ToolSpec)))


def _spec_json(spec: ToolSpec) -> bytes | None:
    """Every field of ``spec``, in order, as JSON (NaN and infinities spelled apart from null); None for
    what JSON cannot spell (a lone surrogate, an object), which is then checked every time."""
    try:
        return pydantic_core.to_json(_TOOL_FIELDS(spec), inf_nan_mode="constants")
    except (ValueError, TypeError):
        return None


@dataclasses.dataclass
class _Tool:
    spec: ToolSpec  # the canonical spec: the memo's own deep copy, never handed out to be changed
    key: bytes
    #: values other layers derive from the canonical spec alone (the prompt's tool dict...), see tool_extras
    extras: dict[str, Any]


class ToolMemo:
    """Tools that passed :func:`check_conversation`'s tool rules, by :func:`_spec_json`, at most
    ``max_bytes`` of that JSON (least recently used go first); safe from several threads.

    A hit needs the same JSON text *and* an equal spec (``==``), so a tuple where the checked tool had a
    list, or an integer key where it had a string, is not taken for it: it is checked, and refused. Only
    tools that passed are kept: a bad tool is checked, and reported, every time.

    The default bound, 2 MB of JSON, is about 6,000 tools of the eval's size; with the canonical copies,
    their shared prompt dicts and remembered ``tojson`` texts that is about 21 MB of objects (measured
    with ``tracemalloc``).
    """

    def __init__(self, max_bytes: int = 2 << 20):
        self.max_bytes = max_bytes
        self._by_key: OrderedDict[bytes, _Tool] = OrderedDict()
        self._by_id: dict[int, _Tool] = {}  # id of a canonical spec (kept alive here, so ids are not reused)
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def canonical(self, spec: ToolSpec, key: bytes | None) -> ToolSpec | None:
        """The canonical spec equal to ``spec``, if one was kept."""
        if key is None:
            return None
        with self._lock:
            entry = self._by_key.get(key)
            if entry is not None and entry.spec == spec:
                self._by_key.move_to_end(key)
                self.hits += 1
                return entry.spec
            self.misses += 1
            return None

    def canonical_all(self, specs: Sequence[ToolSpec], keys: Sequence[bytes | None]) -> list[ToolSpec | None]:
        """:meth:`canonical` of each of ``specs`` (with their keys), under one lock."""
        found: list[ToolSpec | None] = []
        with self._lock:
            for spec, key in zip(specs, keys, strict=True):
                entry = self._by_key.get(key) if key is not None else None
                if entry is not None and entry.spec == spec:
                    self._by_key.move_to_end(key)  # type: ignore[arg-type]
                    found.append(entry.spec)
                else:
                    found.append(None)
            hits = sum(f is not None for f in found)
            self.hits += hits
            self.misses += len(found) - hits
        return found

    def keep(self, spec: ToolSpec, key: bytes | None) -> ToolSpec:
        """Remember ``spec``, which passed; its canonical copy, or ``spec`` itself when it cannot be kept."""
        if key is None or len(key) > self.max_bytes:
            return spec
        canonical = dataclasses.replace(spec, parameters=copy.deepcopy(spec.parameters))
        entry = _Tool(canonical, key, {})
        with self._lock:
            old = self._by_key.pop(key, None)
            if old is not None:
                self._bytes -= len(old.key)
                self._by_id.pop(id(old.spec), None)
            self._by_key[key] = entry
            self._by_id[id(canonical)] = entry
            self._bytes += len(key)
            while self._bytes > self.max_bytes:
                _, dropped = self._by_key.popitem(last=False)
                self._bytes -= len(dropped.key)
                self._by_id.pop(id(dropped.spec), None)
        return canonical

    def entry(self, spec: ToolSpec) -> _Tool | None:
        """The entry of a canonical spec (identity, not equality: only the memo's own objects)."""
        entry = self._by_id.get(id(spec))
        return entry if entry is not None and entry.spec is spec else None

    def clear(self) -> None:
        with self._lock:
            self._by_key.clear()
            self._by_id.clear()
            self._bytes = 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._by_key), "bytes": self._bytes, "max_bytes": self.max_bytes,
                    "hits": self.hits, "misses": self.misses}


#: the process's tool memo (tools are the same whichever model or surface they are offered to)
TOOL_MEMO = ToolMemo()


def tool_key(spec: ToolSpec) -> bytes | None:
    """``spec``'s JSON (:func:`_spec_json`): remembered for a canonical spec, computed otherwise."""
    entry = TOOL_MEMO.entry(spec)
    return entry.key if entry is not None else _spec_json(spec)


def checked_tools_key(specs: Sequence[ToolSpec]) -> tuple[bytes, ...] | None:
    """The JSON of each of ``specs`` when every one is canonical (checked and remembered), else None: an exact
    key for anything derived from those tools alone, at the cost of a lookup per tool."""
    keys = []
    for spec in specs:
        entry = TOOL_MEMO.entry(spec)
        if entry is None:
            return None
        keys.append(entry.key)
    return tuple(keys)


def tool_extras(spec: ToolSpec) -> dict[str, Any] | None:
    """A place for values derived from a canonical ``spec`` alone, kept as long as the memo keeps the tool;
    None for a spec that is not canonical. What is put there is shared: never change it."""
    entry = TOOL_MEMO.entry(spec)
    return entry.extras if entry is not None else None


def _check_tool(i: int, spec: ToolSpec) -> None:
    if not spec.name:
        raise BadRequest(f"tools[{i}].function.name is empty", param=f"tools[{i}].function.name")
    where = f"tools[{i}].function.parameters"
    check_depth(spec.parameters, where)
    check_schema_for(spec.parameters, where, f"{where} (tool {spec.name!r})", objects=spec.objects,
                     strict=spec.strict)


def _checked_tools(conv: Conversation) -> list[ToolSpec]:
    """``conv.tools`` checked, each replaced by its canonical spec (:class:`ToolMemo`)."""
    keys = [_spec_json(spec) for spec in conv.tools]
    found = TOOL_MEMO.canonical_all(conv.tools, keys)
    tools = []
    for i, spec in enumerate(conv.tools):
        canonical = found[i]
        if canonical is None:
            _check_tool(i, spec)
            canonical = TOOL_MEMO.keep(spec, keys[i])
        tools.append(canonical)
    _check_tool_choice(conv)
    return tools


def _check_tool_choice(conv: Conversation) -> None:
    names = [spec.name for spec in conv.tools]
    dupes = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
    if dupes:
        first = next(i for i, n in enumerate(names) if n in names[:i])
        raise BadRequest(f"tool names must be unique; repeated: {', '.join(dupes)}",
                         param=f"tools[{first}].function.name")
    choice = conv.tool_choice
    if isinstance(choice, NamedToolChoice):
        if choice.name not in names:
            raise BadRequest(f"tool_choice names function '{choice.name}', which is not in 'tools'",
                             param="tool_choice")
    elif choice not in ("none", "auto", "required"):
        raise BadRequest(f"tool_choice {choice!r} is not 'none', 'auto', 'required' or a function",
                         param="tool_choice")
    elif choice == "required" and not names:
        raise BadRequest("tool_choice 'required' needs at least one tool in 'tools'", param="tool_choice")


#: template variables the proxy sets itself: ``chat_template_kwargs`` may not replace them
RESERVED_TEMPLATE_VARIABLES = frozenset({
    "messages", "tools", "add_generation_prompt", "bos_token", "eos_token", "raise_exception", "strftime_now",
    "documents", "builtin_tools",
})


def _check_reasoning(conv: Conversation) -> None:
    if conv.reasoning_effort is not None and conv.reasoning_effort not in REASONING_EFFORTS:
        raise BadRequest(f"reasoning_effort {conv.reasoning_effort!r} is not one of {', '.join(REASONING_EFFORTS)}",
                         param="reasoning_effort", code="invalid_value")
    kwargs = conv.template_kwargs
    if not isinstance(kwargs, dict):
        raise BadRequest("'chat_template_kwargs' must be an object of template variables",
                         param="chat_template_kwargs", code="invalid_type")
    check_depth(kwargs, "chat_template_kwargs")
    for key, value in kwargs.items():
        where = f"chat_template_kwargs.{key}"
        if key in RESERVED_TEMPLATE_VARIABLES:
            raise BadRequest(f"'{where}' is set by oaiproxy itself and cannot be replaced", param=where,
                             code="invalid_value")
        if key in THINKING_SWITCHES and not isinstance(value, bool):
            raise BadRequest(f"'{where}' must be true or false", param=where, code="invalid_type")
        if key == "reasoning_effort" and value is not None and not isinstance(value, str):
            raise BadRequest(f"'{where}' must be a string", param=where, code="invalid_type")


def _checked_response_format(fmt: ResponseFormat) -> ResponseFormat:
    """``fmt`` checked, and in the form the dialects build from: a json_schema without a schema is
    json_object; a strict schema has every object closed, as the grammar enforces it."""
    where = "response_format.json_schema.schema"
    check_depth(fmt.schema, where)
    if fmt.type == "json_schema" and fmt.schema is None:
        return ResponseFormat(type="json_object")
    if fmt.schema is None:
        return fmt
    check_schema_for(fmt.schema, where, where, strict=fmt.strict)
    if not fmt.strict:
        return fmt
    closed = json.loads(json.dumps(enforced_schema(fmt.schema, strict=True)))  # a copy: the result is shared
    return ResponseFormat(type=fmt.type, schema=closed, name=fmt.name, strict=True)


def check_conversation(conv: Conversation) -> Conversation:
    """``conv`` checked against every cross-field rule, ready for a dialect; a :class:`BadRequest` otherwise.

    The rules: history call arguments not nested without bound; every tool named, once, with
    parameters a valid schema the proxy can enforce; ``tool_choice`` one of the modes or naming
    a given tool, and "required" only with tools; a response schema valid and enforceable;
    ``reasoning_effort`` one of its values and ``chat_template_kwargs`` an object that replaces
    none of the proxy's own template variables, with boolean thinking switches. The
    returned conversation differs from ``conv`` only in its response format (see
    :func:`_checked_response_format`) and in its tools being the equal canonical specs of the
    tool memo (:class:`ToolMemo`): shared between requests, so never changed.
    """
    _check_history(conv)
    tools = _checked_tools(conv)
    _check_reasoning(conv)
    fmt = _checked_response_format(conv.response_format)
    if fmt is conv.response_format and all(a is b for a, b in zip(tools, conv.tools, strict=True)):
        return conv
    return dataclasses.replace(conv, tools=tools, response_format=fmt)


__all__ = ["MAX_ARGUMENTS_DEPTH", "MAX_SCHEMA_DEPTH", "RESERVED_TEMPLATE_VARIABLES", "TOOL_MEMO", "ToolMemo",
           "check_conversation", "check_depth", "check_schema_for", "checked_tools_key", "json_text_depth",
           "tool_extras", "tool_key"]
