"""The plan cache: a request's grammar, lazy triggers, preserved tokens and stops, reused for the next
request that offers the same tools with the same options.

An agent sends the same tool list on every turn; only the messages change. Building the grammar of
128 tools is tens of milliseconds of the proxy's CPU, rebuilt for nothing. A style whose plan splits
(:meth:`~oaiproxy.dialects.base.Style.prompt_plan`: the prompt and parser per request, the rest a
function of the tools, the options and the template alone; every model-native dialect, through
:class:`~oaiproxy.dialects.native.DialectStyle`) gets the rest from here; a style that does not
split is planned whole, every time (counted as ``bypassed``).

The key is every field of the :class:`~oaiproxy.conversation.model.Conversation` but its messages
(tools with names, descriptions, schemas in their key order, strictness; tool choice; parallel calls;
response format; reasoning effort; template variables; whether reasoning is allowed), with the style
and its template, hashed (SHA-256) from their JSON (each tool's remembered by the tool memo when the
conversation was checked, :mod:`oaiproxy.conversation.checks`). A field added to Conversation later is part of
the key without a change here. The cache is bounded in bytes (the sizes of the strings it keeps,
estimated with ``sys.getsizeof``), least recently used plans going first; one cache per engine (so
per model and template).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from oaiproxy.conversation.checks import tool_key
from oaiproxy.conversation.model import Conversation
from oaiproxy.dialects.base import GenerationPlan, Reasoning, Style

#: the default bound: ~150 plans of 128 tools each (a 128-tool grammar is ~200 KB), thousands of small ones
DEFAULT_MAX_BYTES = 32 << 20
#: what an entry costs beyond its strings: the key, the entry, the OrderedDict node (estimated)
_ENTRY_OVERHEAD = 400


@dataclass(frozen=True)
class _Entry:
    grammar: str | None
    grammar_lazy: bool
    grammar_triggers: tuple[tuple[tuple[str, str], ...], ...]
    preserved_tokens: tuple[str, ...]
    stop: tuple[str, ...]
    reasoning: Reasoning | None
    size: int

    @classmethod
    def of(cls, plan: GenerationPlan) -> _Entry:
        strings = [plan.grammar or "", *plan.preserved_tokens, *plan.stop,
                   *(v for t in plan.grammar_triggers for kv in t.items() for v in kv)]
        return cls(plan.grammar, plan.grammar_lazy, tuple(tuple(t.items()) for t in plan.grammar_triggers),
                   tuple(plan.preserved_tokens), tuple(plan.stop), plan.reasoning,
                   _ENTRY_OVERHEAD + sum(sys.getsizeof(s) for s in strings))

    def onto(self, head: GenerationPlan) -> GenerationPlan:
        """``head`` (a prompt and a fresh parser) completed with this entry, in fresh lists of its own."""
        head.grammar = self.grammar
        head.grammar_lazy = self.grammar_lazy
        head.grammar_triggers = [dict(t) for t in self.grammar_triggers]
        head.preserved_tokens = list(self.preserved_tokens)
        head.stop = list(self.stop)
        head.reasoning = self.reasoning
        return head


def _encode(value: Any) -> Any:
    """JSON for the key: a dataclass (ToolSpec, NamedToolChoice, ResponseFormat) as its type and fields."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [type(value).__name__, {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}]
    raise TypeError(f"cannot key a plan on {type(value).__name__}")


def plan_key(style: Style, conv: Conversation) -> bytes:
    """The cache key of ``conv`` for ``style``: everything but the messages (see the module's docstring).

    The tools enter as their JSON (:func:`~oaiproxy.conversation.checks.tool_key`: remembered for a checked
    tool, so a repeated list of 128 tools is not read again), one after the other with their lengths."""
    options = [[f.name, getattr(conv, f.name)] for f in dataclasses.fields(conv) if f.name not in ("messages", "tools")]
    data = [type(style).__module__, type(style).__qualname__, style.template.name, options]
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_encode)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass"))
    digest.update(b"\0tools:%d" % len(conv.tools))
    for spec in conv.tools:
        key = tool_key(spec)
        if key is None:
            raise TypeError(f"cannot key a plan on tool {spec.name!r}")
        digest.update(b"\0%d:" % len(key))
        digest.update(key)
    return digest.digest()


def splits(style: Style) -> bool:
    """Whether ``style``'s plan splits: it has a :meth:`~Style.prompt_plan`, from the same class as its
    :meth:`~Style.plan` (a subclass that plans its own way, and did not split that too, is planned whole)."""
    cls = type(style)
    owner = next((c for c in cls.__mro__ if "plan" in c.__dict__), None)
    split_owner = next((c for c in cls.__mro__ if "prompt_plan" in c.__dict__), None)
    return owner is not None and owner is split_owner and owner is not Style


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    bypassed: int
    entries: int
    bytes: int
    max_bytes: int


class PlanCache:
    """Plans' tool parts by :func:`plan_key`, at most ``max_bytes`` of them (least recently used go first).

    Safe to use from several threads at once (the engine plans in worker threads)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        #: plans of a style that does not split (see :func:`splits`), or with options JSON cannot spell:
        #: built whole, never cached
        self.bypassed = 0

    def plan(self, style: Style, conv: Conversation) -> GenerationPlan:
        """``style.plan(conv)``, its tool parts reused when the same tools and options were planned before."""
        try:
            key = plan_key(style, conv) if splits(style) else None
        except (TypeError, ValueError):  # a value JSON cannot spell: planned whole, as a style that does not split
            key = None
        if key is None:
            with self._lock:
                self.bypassed += 1
            return style.plan(conv)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
        if entry is not None:
            head = style.prompt_plan(conv)
            assert head is not None  # splits(style)
            return entry.onto(head)
        plan = style.plan(conv)
        self._keep(key, _Entry.of(plan))
        return plan

    def _keep(self, key: bytes, entry: _Entry) -> None:
        if entry.size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._entries[key] = entry
            self._bytes += entry.size
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self.hits, self.misses, self.bypassed, len(self._entries), self._bytes, self.max_bytes)


__all__ = ["DEFAULT_MAX_BYTES", "CacheStats", "PlanCache", "plan_key", "splits"]
