"""A character-at-a-time JSON scanner that knows which value each character belongs to.

Tool-call arguments must stream as the model writes them, long before the
enclosing object is complete, so parsers cannot wait for ``json.loads``. The
scanner validates JSON syntax incrementally and, for every character, reports
the *path* of the innermost value it belongs to (``()`` for the root value,
``("arguments",)``, ``("tool_calls", 0, "name")`` ...) plus the paths of the
values that character completed. The raw text of the value at path ``P`` is then
simply every character whose path starts with ``P`` — what a parser streams.
"""

from __future__ import annotations

import json
import re

Path = tuple[str | int, ...]

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")
_WS = " \t\n\r"
_HEX = set("0123456789abcdefABCDEF")


class JsonScanError(ValueError):
    """The text is not (the beginning of) one JSON value."""


class _Frame:
    __slots__ = ("kind", "path", "key", "index")

    def __init__(self, kind: str, path: Path):
        self.kind = kind  # "object" or "array"
        self.path = path
        self.key: str | None = None
        self.index = 0


class JsonScanner:
    """Scans exactly one JSON value; call :meth:`feed_char` per character."""

    def __init__(self) -> None:
        self._stack: list[_Frame] = []
        self._state = "value"  # what the next significant character must be
        self._scalar_path: Path | None = None
        self._scalar_raw: list[str] = []
        self._literal_rest = ""
        self._escape = 0  # 0: none, 1: after backslash, 2..5: inside \uXXXX
        self._key_raw: list[str] = []
        self.done = False
        self.started = False
        #: the last character given to feed_char was not consumed (it ended a root-level number)
        self.rejected = False

    # -- public -------------------------------------------------------------

    def feed_char(self, ch: str) -> tuple[Path | None, list[Path]]:
        """Consume one character: (path it belongs to or None, paths it completed).

        After a root-level number the first other character completes it but is
        not consumed: :attr:`rejected` is then True and the caller keeps it.
        """
        if self.done:
            raise JsonScanError(f"text after the end of the JSON value: {ch!r}")
        completed: list[Path] = []
        if self._state == "number":
            if ch in "0123456789+-.eE":
                self._scalar_raw.append(ch)
                return self._scalar_path, completed
            self._end_number(completed)
            ended: bool = self.done  # set by _end_number (read anew: mypy keeps the narrowing from above)
            if ended:  # a number at the root ends at the first other character, which is not ours
                self.rejected = True
                return None, completed
        path = self._step(ch, completed)
        return path, completed

    def finish(self) -> list[Path]:
        """End of text: completes a trailing top-level number, else raises if incomplete."""
        completed: list[Path] = []
        if self._state == "number":
            self._end_number(completed)
        if not self.done:
            raise JsonScanError("the JSON value is incomplete")
        return completed

    # -- machinery ----------------------------------------------------------

    def _value_path(self) -> Path:
        if not self._stack:
            return ()
        top = self._stack[-1]
        return top.path + ((top.key,) if top.kind == "object" else (top.index,))  # type: ignore[operator]

    def _container_path(self) -> Path | None:
        return self._stack[-1].path if self._stack else None

    def _value_done(self, path: Path, completed: list[Path]) -> None:
        completed.append(path)
        if not self._stack:
            self.done = True
            self._state = "end"
        else:
            self._state = "after_value"

    def _end_number(self, completed: list[Path]) -> None:
        raw = "".join(self._scalar_raw)
        if not _NUMBER.match(raw):
            raise JsonScanError(f"invalid number {raw!r}")
        assert self._scalar_path is not None
        self._value_done(self._scalar_path, completed)

    def _step(self, ch: str, completed: list[Path]) -> Path | None:
        state = self._state
        if state == "string":
            path = self._scalar_path
            if self._escape:
                self._check_escape(ch)
            elif ch == "\\":
                self._escape = 1
            elif ch == '"':
                assert path is not None
                self._value_done(path, completed)
            elif ord(ch) < 0x20:
                raise JsonScanError("control character in a string")
            return path
        if state == "key":
            path = self._container_path()
            if self._escape:
                self._check_escape(ch)
                self._key_raw.append(ch)
            elif ch == "\\":
                self._escape = 1
                self._key_raw.append(ch)
            elif ch == '"':
                self._stack[-1].key = json.loads('"' + "".join(self._key_raw) + '"')
                self._key_raw = []
                self._state = "colon"
            elif ord(ch) < 0x20:
                raise JsonScanError("control character in a key")
            else:
                self._key_raw.append(ch)
            return path
        if state == "literal":
            if ch != self._literal_rest[0]:
                raise JsonScanError(f"unexpected {ch!r} in a literal")
            self._literal_rest = self._literal_rest[1:]
            path = self._scalar_path
            if not self._literal_rest:
                assert path is not None
                self._value_done(path, completed)
            return path
        if ch in _WS:
            return self._container_path()
        if state == "value" or state == "value_or_end":
            if state == "value_or_end" and ch == "]":
                return self._close(ch, completed)
            path = self._value_path()
            self.started = True
            if ch == "{":
                self._stack.append(_Frame("object", path))
                self._state = "key_or_end"
            elif ch == "[":
                self._stack.append(_Frame("array", path))
                self._state = "value_or_end"
            elif ch == '"':
                self._scalar_path = path
                self._state = "string"
            elif ch in "-0123456789":
                self._scalar_path = path
                self._scalar_raw = [ch]
                self._state = "number"
            elif ch in "tfn":
                self._scalar_path = path
                self._literal_rest = {"t": "rue", "f": "alse", "n": "ull"}[ch]
                self._state = "literal"
            else:
                raise JsonScanError(f"unexpected {ch!r} where a JSON value should start")
            return path
        if state in ("key_or_end", "key_start"):
            if ch == '"':
                self._state = "key"
                return self._container_path()
            if state == "key_or_end" and ch == "}":
                return self._close(ch, completed)
            raise JsonScanError(f"unexpected {ch!r} where an object key should start")
        if state == "colon":
            if ch != ":":
                raise JsonScanError(f"expected ':' after an object key, got {ch!r}")
            self._state = "value"
            return self._container_path()
        if state == "after_value":
            top = self._stack[-1]
            if ch == ",":
                if top.kind == "object":
                    self._state = "key_start"
                else:
                    top.index += 1
                    self._state = "value"
                return top.path
            return self._close(ch, completed)
        raise JsonScanError(f"unexpected {ch!r}")  # pragma: no cover - "end" is caught in feed_char

    def _close(self, ch: str, completed: list[Path]) -> Path:
        top = self._stack[-1]
        if ch != ("}" if top.kind == "object" else "]"):
            raise JsonScanError(f"unexpected {ch!r} inside an {top.kind}")
        self._stack.pop()
        self._value_done(top.path, completed)
        return top.path

    def _check_escape(self, ch: str) -> None:
        if self._escape == 1:
            if ch == "u":
                self._escape = 2
            elif ch in '"\\/bfnrt':
                self._escape = 0
            else:
                raise JsonScanError(f"invalid escape \\{ch}")
        else:
            if ch not in _HEX:
                raise JsonScanError("invalid \\u escape")
            self._escape = 0 if self._escape == 5 else self._escape + 1


class StringDecoder:
    """Decodes the raw inside of a JSON string as it streams, never splitting an escape."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, raw: str) -> str:
        text = self._pending + raw
        cut = _safe_cut(text)
        self._pending = text[cut:]
        return json.loads('"' + text[:cut] + '"') if cut else ""

    def finish(self) -> str:
        text, self._pending = self._pending, ""
        try:
            return json.loads('"' + text + '"') if text else ""
        except ValueError:
            return text


def _safe_cut(text: str) -> int:
    """Length of the longest prefix of ``text`` that ends outside any escape sequence."""
    i = 0
    safe = 0
    n = len(text)
    while i < n:
        if text[i] != "\\":
            i += 1
            safe = i
            continue
        if i + 1 >= n:
            return safe
        if text[i + 1] != "u":
            i += 2
            safe = i
            continue
        if i + 6 > n:
            return safe
        code = int(text[i + 2 : i + 6], 16)
        if 0xD800 <= code < 0xDC00:  # high surrogate: wait for its low half
            if i + 12 > n:
                return safe
            i += 12
        else:
            i += 6
        safe = i
    return safe
