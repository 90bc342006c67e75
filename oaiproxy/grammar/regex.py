"""ECMA-262 regular expressions (JSON Schema ``pattern``) parsed into a small AST.

Only the regular subset a grammar can express is accepted: characters,
classes, escapes, ``.``, groups, alternation, quantifiers (greedy or lazy —
laziness does not change the language) and ``^``/``$`` at the ends of top-level
alternatives. Backreferences, lookaround, word boundaries and Unicode property
escapes raise :class:`RegexError` with the offending position, so an
unsupported pattern is refused rather than silently widened.
"""

from __future__ import annotations

from dataclasses import dataclass

from oaiproxy.grammar import charsets as cs

MAX_PATTERN_LENGTH = 1000
MAX_QUANTIFIER = 1000


class RegexError(ValueError):
    pass


@dataclass(frozen=True)
class Chars:
    """One character from a set of code points."""

    set: cs.Intervals


@dataclass(frozen=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    options: tuple[Node, ...]


@dataclass(frozen=True)
class Repeat:
    item: Node
    lo: int
    hi: int | None


@dataclass(frozen=True)
class Anchor:
    kind: str  # "^" or "$"


#: a parsed pattern: what a grammar rule or a Python regex is built from
Node = Chars | Seq | Alt | Repeat | Anchor


_DIGIT = cs.normalize([(0x30, 0x39)])
_WORD = cs.normalize([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
_SPACE = cs.normalize([(0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
                       (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF)])
_LINE_TERMINATORS = cs.normalize([(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)])
DOT = cs.complement(_LINE_TERMINATORS)
_CLASS_ESCAPES = {"d": _DIGIT, "D": cs.complement(_DIGIT), "w": _WORD, "W": cs.complement(_WORD),
                  "s": _SPACE, "S": cs.complement(_SPACE)}
_CONTROL_ESCAPES = {"t": 0x09, "n": 0x0A, "r": 0x0D, "v": 0x0B, "f": 0x0C}


class _Parser:
    def __init__(self, src: str):
        self.s = src
        self.i = 0

    def fail(self, msg: str) -> RegexError:
        return RegexError(f"{msg} at position {self.i} of the pattern")

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def parse(self) -> Node:
        node = self.alternation()
        if self.i < len(self.s):
            raise self.fail(f"unexpected {self.peek()!r}")
        return node

    def alternation(self) -> Node:
        options = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            options.append(self.sequence())
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def sequence(self) -> Node:
        items: list[Node] = []
        while self.i < len(self.s) and self.peek() not in "|)":
            atom = self.atom()
            atom = self.quantified(atom)
            items.append(atom)
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def quantified(self, atom: Node) -> Node:
        while True:
            c = self.peek()
            if c in ("*", "+", "?"):
                lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
                self.i += 1
            elif c == "{" and (brace := self._brace_quantifier()) is not None:
                lo, hi, end = brace
                self.i = end
            else:
                return atom
            if isinstance(atom, Anchor):
                raise self.fail("quantifier after an anchor")
            if self.peek() == "?":  # lazy: same language
                self.i += 1
            for bound in (lo, hi):
                if bound is not None and bound > MAX_QUANTIFIER:
                    raise self.fail(f"repetition count {bound} exceeds the limit of {MAX_QUANTIFIER}")
            if hi is not None and hi < lo:
                raise self.fail("numbers out of order in {} quantifier")
            atom = Repeat(atom, lo, hi)
            if self.peek() in ("*", "+", "?", "{") and not (self.peek() == "{" and self._brace_quantifier() is None):
                raise self.fail("nothing to repeat")

    def _brace_quantifier(self) -> tuple[int, int | None, int] | None:
        j = self.i + 1
        start = j
        while j < len(self.s) and self.s[j].isdigit():
            j += 1
        if j == start or j - start > 9:
            return None
        lo = int(self.s[start:j])
        hi: int | None = lo
        if j < len(self.s) and self.s[j] == ",":
            j += 1
            start = j
            while j < len(self.s) and self.s[j].isdigit():
                j += 1
            hi = int(self.s[start:j]) if j > start else None
            if hi is not None and j - start > 9:
                return None
        if j < len(self.s) and self.s[j] == "}":
            return lo, hi, j + 1
        return None

    def atom(self) -> Node:
        c = self.peek()
        if c == "^":
            self.i += 1
            return Anchor("^")
        if c == "$":
            self.i += 1
            return Anchor("$")
        if c == ".":
            self.i += 1
            return Chars(DOT)
        if c == "(":
            self.i += 1
            if self.peek() == "?":
                if self.peek(1) == ":":
                    self.i += 2
                elif self.peek(1) == "<" and self.peek(2) not in ("=", "!"):
                    end = self.s.find(">", self.i)
                    if end < 0:
                        raise self.fail("unterminated group name")
                    self.i = end + 1
                else:
                    raise self.fail("lookaround assertions are not supported")
            inner = self.alternation()
            if self.peek() != ")":
                raise self.fail("missing )")
            self.i += 1
            return inner
        if c == ")":
            raise self.fail("unmatched )")
        if c == "[":
            return Chars(self.char_class())
        if c in ("*", "+", "?"):
            raise self.fail("nothing to repeat")
        if c == "{" and self._brace_quantifier() is not None:
            raise self.fail("nothing to repeat")
        if c == "\\":
            return Chars(self.escape(in_class=False))
        self.i += 1
        return Chars(cs.single(ord(c)))

    def escape(self, in_class: bool) -> cs.Intervals:
        self.i += 1  # the backslash
        c = self.peek()
        if not c:
            raise self.fail("pattern ends with a backslash")
        self.i += 1
        if c in _CLASS_ESCAPES:
            return _CLASS_ESCAPES[c]
        if c in _CONTROL_ESCAPES:
            return cs.single(_CONTROL_ESCAPES[c])
        if c == "b":
            if in_class:
                return cs.single(0x08)
            raise self.fail("word boundaries (\\b) are not supported")
        if c == "B":
            raise self.fail("word boundaries (\\B) are not supported")
        if c == "0" and not self.peek().isdigit():
            return cs.single(0)
        if c.isdigit():
            raise self.fail("backreferences are not supported")
        if c == "x":
            return cs.single(self._hex(2))
        if c == "u":
            if self.peek() == "{":
                end = self.s.find("}", self.i)
                digits = self.s[self.i + 1:end] if end > 0 else ""
                if not digits or len(digits) > 6 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                    raise self.fail("bad \\u{...} escape")
                self.i = end + 1
                cp = int(digits, 16)
                if cp > cs.MAX_CODE_POINT:
                    raise self.fail("code point out of range")
                return cs.single(cp)
            cp = self._hex(4)
            if 0xD800 <= cp <= 0xDBFF and self.s.startswith("\\u", self.i):
                save = self.i
                self.i += 2
                low = self._hex(4)
                if 0xDC00 <= low <= 0xDFFF:
                    return cs.single(0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00))
                self.i = save
            if 0xD800 <= cp <= 0xDFFF:
                raise self.fail("lone surrogate escapes are not supported")
            return cs.single(cp)
        if c == "c":
            letter = self.peek()
            if letter.isascii() and letter.isalpha():
                self.i += 1
                return cs.single(ord(letter) % 32)
            raise self.fail("bad \\c escape")
        if c in ("p", "P"):
            raise self.fail("Unicode property escapes are not supported")
        if c == "k":
            raise self.fail("named backreferences are not supported")
        if c.isalnum():
            raise self.fail(f"unknown escape \\{c}")
        return cs.single(ord(c))

    def _hex(self, n: int) -> int:
        digits = self.s[self.i:self.i + n]
        if len(digits) != n or any(d not in "0123456789abcdefABCDEF" for d in digits):
            raise self.fail(f"expected {n} hex digits")
        self.i += n
        return int(digits, 16)

    def char_class(self) -> cs.Intervals:
        self.i += 1  # [
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        parts: list[tuple[int, int]] = []
        while True:
            c = self.peek()
            if not c:
                raise self.fail("missing ]")
            if c == "]":  # ECMA: "[]" is an empty class, "[^]" any character
                self.i += 1
                break
            lo_set = self.class_atom()
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                hi_set = self.class_atom()
                if len(lo_set) != 1 or lo_set[0][0] != lo_set[0][1] or len(hi_set) != 1 or hi_set[0][0] != hi_set[0][1]:
                    raise self.fail("a class escape cannot be a range bound")
                lo, hi = lo_set[0][0], hi_set[0][0]
                if hi < lo:
                    raise self.fail("range out of order in character class")
                parts.append((lo, hi))
            else:
                parts.extend(lo_set)
        result = cs.normalize(parts)
        return cs.complement(result) if negated else result

    def class_atom(self) -> cs.Intervals:
        c = self.peek()
        if c == "\\":
            return self.escape(in_class=True)
        self.i += 1
        return cs.single(ord(c))


def parse(pattern: str) -> Node:
    """Parse an ECMA-262 pattern; raise RegexError for what a grammar cannot express."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexError(f"pattern is longer than the limit of {MAX_PATTERN_LENGTH} characters")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in pattern):
        raise RegexError("pattern contains a lone surrogate")
    return _Parser(pattern).parse()


def split_anchors(node: Node) -> list[tuple[bool, Node, bool]]:
    """Top-level alternatives as (anchored at start, body, anchored at end).

    Anchors anywhere else are refused: a grammar matches whole strings, so only
    the ends of the pattern can say "starts here" or "ends here".
    """
    options = node.options if isinstance(node, Alt) else (node,)
    out: list[tuple[bool, Node, bool]] = []
    for option in options:
        items = list(option.items) if isinstance(option, Seq) else [option]
        start = end = False
        while items and items[0] == Anchor("^"):
            items.pop(0)
            start = True
        while items and items[-1] == Anchor("$"):
            items.pop()
            end = True
        body = Seq(tuple(items)) if len(items) != 1 else items[0]
        if _has_anchor(body):
            raise RegexError("anchors (^, $) are only supported at the start and end of the pattern")
        out.append((start, body, end))
    return out


def _has_anchor(node: Node) -> bool:
    if isinstance(node, Anchor):
        return True
    if isinstance(node, Seq):
        return any(_has_anchor(i) for i in node.items)
    if isinstance(node, Alt):
        return any(_has_anchor(o) for o in node.options)
    if isinstance(node, Repeat):
        return _has_anchor(node.item)
    return False


def length_bounds(node: Node) -> tuple[int, int | None]:
    """Shortest and longest match (None: unbounded), in characters."""
    if isinstance(node, Chars):
        return (1, 1) if node.set else (0, 0)
    if isinstance(node, Seq):
        lo = 0
        hi: int | None = 0
        for item in node.items:
            a, b = length_bounds(item)
            lo += a
            hi = None if hi is None or b is None else hi + b
        return lo, hi
    if isinstance(node, Alt):
        bounds = [length_bounds(o) for o in node.options]
        lo = min(b[0] for b in bounds)
        highs = [b[1] for b in bounds]
        return lo, (None if any(h is None for h in highs) else max(h for h in highs if h is not None))
    if isinstance(node, Repeat):
        a, b = length_bounds(node.item)
        return a * node.lo, (None if node.hi is None or b is None else b * node.hi)
    return 0, 0


_ANY = cs.complement(cs.normalize([]))


def length_only(pattern: str) -> tuple[int, int | None] | None:
    """``(minLength, maxLength)`` when a pattern says nothing but a length (``^[\\s\\S]{0,300}$``), else None.

    Schemas generated from validators (zod's ``.max(300)`` beside ``.regex(...)``) write a length as a
    pattern; as a length it merges with another pattern in ``allOf``, where two patterns cannot.
    """
    try:
        branches = split_anchors(parse(pattern))
    except RegexError:
        return None
    if len(branches) != 1:
        return None
    start, body, end = branches[0]
    if not (start and end):
        return None
    if isinstance(body, Chars) and body.set == _ANY:
        return 1, 1
    if isinstance(body, Repeat) and isinstance(body.item, Chars) and body.item.set == _ANY:
        return body.lo, body.hi
    return None


# --- the same language as a Python regex (for the validator) ----------------------------------

def _py_char(cp: int) -> str:
    return f"\\U{cp:08x}"


def _py(node: Node) -> str:
    if isinstance(node, Chars):
        if not node.set:
            return "(?!)"
        return "[" + "".join(_py_char(lo) if lo == hi else f"{_py_char(lo)}-{_py_char(hi)}"
                             for lo, hi in node.set) + "]"
    if isinstance(node, Seq):
        return "".join(f"(?:{_py(item)})" for item in node.items)
    if isinstance(node, Alt):
        return "(?:" + "|".join(_py(o) for o in node.options) + ")"
    if isinstance(node, Repeat):
        hi = "" if node.hi is None else str(node.hi)
        return f"(?:{_py(node.item)}){{{node.lo},{hi}}}"
    raise TypeError(node)


def to_python(pattern: str) -> str:
    """``pattern`` (ECMA-262, as the grammar reads it) as a Python regex for ``re.search``.

    ``jsonschema`` checks ``pattern`` with Python's ``re``, whose ``\\d``, ``\\w``, ``\\s`` and
    their negations, ``.`` and ``$`` mean other things than ECMA's, and which refuses ECMA
    syntax such as ``\\u{1F600}``, ``\\cJ`` or ``(?<name>…)``. The validator checks the
    pattern through this translation instead, so it and the grammar read one language.
    Raises :class:`RegexError` like :func:`parse`.
    """
    branches = split_anchors(parse(pattern))
    return "|".join(("^" if start else "") + f"(?:{_py(body)})" + ("\\Z" if end else "")
                    for start, body, end in branches)
