"""Rendered texts that are a function of their key alone (a dialect's tool section of the system prompt,
rendered from oaiproxy's own prompt templates for a given tool list and options), remembered.

The caller makes the key exact: the JSON of every checked tool (:func:`oaiproxy.conversation.checks.tool_key`)
and every other value the render reads. Bounded in characters, least recently used first; thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

#: the default bound: about 40 tool sections of 128 tools
DEFAULT_MAX_CHARS = 4_000_000


class TextMemo:
    def __init__(self, max_chars: int = DEFAULT_MAX_CHARS):
        self.max_chars = max_chars
        self._texts: OrderedDict[Hashable, str] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable | None, make: Callable[[], str]) -> str:
        """The text for ``key``, made (and kept, when it fits) the first time; ``key`` None: made every time."""
        if key is None:
            return make()
        with self._lock:
            text = self._texts.get(key)
            if text is not None:
                self._texts.move_to_end(key)
                self.hits += 1
                return text
            self.misses += 1
        text = make()
        if len(text) <= self.max_chars:
            with self._lock:
                old = self._texts.pop(key, None)
                self._chars += len(text) - (len(old) if old is not None else 0)
                self._texts[key] = text
                while self._chars > self.max_chars:
                    _, dropped = self._texts.popitem(last=False)
                    self._chars -= len(dropped)
        return text

    def clear(self) -> None:
        with self._lock:
            self._texts.clear()
            self._chars = 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._texts), "chars": self._chars, "max_chars": self.max_chars,
                    "hits": self.hits, "misses": self.misses}


#: the process's memo of tool sections (keys name their dialect and prompt template)
TOOL_SECTIONS = TextMemo()

__all__ = ["DEFAULT_MAX_CHARS", "TOOL_SECTIONS", "TextMemo"]
