"""An independent GBNF recogniser: the test oracle for every grammar oaiproxy builds.

It shares no code with ``oaiproxy.grammar`` on purpose: a converter bug that
the oracle copied would go unnoticed. It reads the GBNF dialect llama.cpp
parses (rules, string literals with escapes, character classes with negation,
ranges and escapes, ``.``, grouping, ``|``, ``*``, ``+``, ``?``, ``{m}``,
``{m,}``, ``{m,n}``, comments) and decides membership over Unicode code points
by memoised set-of-end-positions matching, which handles ambiguity without
backtracking blow-ups. Token syntax (``<...>``) is rejected: tests do not use it.

Use ``accepts(grammar_text, text)``; ``sample(grammar_text, rng)`` draws a random string of
the grammar's language (for differential tests: whatever the grammar admits must pass the
validator); ``parse_grammar`` raises ``GrammarSyntaxError``
for text llama.cpp would refuse (undefined rules, bad escapes, left recursion is
reported when met during matching).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["accepts", "parse_grammar", "sample", "GrammarSyntaxError", "Grammar"]


class GrammarSyntaxError(ValueError):
    pass


# --- expression nodes -------------------------------------------------------------------------

@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class Cls:
    ranges: tuple[tuple[int, int], ...]
    negated: bool

    def has(self, cp: int) -> bool:
        inside = any(lo <= cp <= hi for lo, hi in self.ranges)
        return inside != self.negated


@dataclass(frozen=True)
class AnyChar:
    pass


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class Seq:
    items: tuple


@dataclass(frozen=True)
class Alt:
    options: tuple


@dataclass(frozen=True)
class Rep:
    item: object
    lo: int
    hi: int | None


# --- parser ---------------------------------------------------------------------------------

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_SIMPLE_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class _Parser:
    def __init__(self, src: str):
        self.s = src
        self.i = 0

    def error(self, msg: str) -> GrammarSyntaxError:
        line = self.s.count("\n", 0, self.i) + 1
        return GrammarSyntaxError(f"{msg} (line {line}: {self.s[self.i:self.i + 30]!r})")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip(self, newlines: bool) -> None:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self.i += 1
            elif c == "#":
                while self.i < len(self.s) and self.s[self.i] not in "\r\n":
                    self.i += 1
            else:
                break

    def name(self) -> str:
        start = self.i
        while self.peek() and self.peek() in _NAME_CHARS:
            self.i += 1
        if start == self.i:
            raise self.error("expected a rule name")
        return self.s[start:self.i]

    def int_(self) -> int:
        start = self.i
        while self.peek().isdigit() and self.peek().isascii():
            self.i += 1
        if start == self.i:
            raise self.error("expected an integer")
        return int(self.s[start:self.i])

    def char(self) -> int:
        c = self.peek()
        if not c:
            raise self.error("unexpected end of grammar")
        if c != "\\":
            self.i += 1
            return ord(c)
        e = self.s[self.i + 1:self.i + 2]
        if e in _SIMPLE_ESCAPES:
            self.i += 2
            return ord(_SIMPLE_ESCAPES[e])
        if e in _HEX_ESCAPES:
            n = _HEX_ESCAPES[e]
            digits = self.s[self.i + 2:self.i + 2 + n]
            if len(digits) != n or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise self.error(f"expected {n} hex digits")
            self.i += 2 + n
            return int(digits, 16)
        raise self.error(f"unknown escape \\{e}")

    def grammar(self) -> dict[str, object]:
        rules: dict[str, object] = {}
        self.skip(True)
        while self.i < len(self.s):
            name = self.name()
            self.skip(False)
            if not self.s.startswith("::=", self.i):
                raise self.error("expected ::=")
            self.i += 3
            self.skip(True)
            body = self.alternates(nested=False)
            if name in rules:
                raise self.error(f"rule {name} defined twice")
            rules[name] = body
            c = self.peek()
            if c == "\r":
                self.i += 2 if self.s[self.i + 1:self.i + 2] == "\n" else 1
            elif c == "\n":
                self.i += 1
            elif c:
                raise self.error("expected end of line")
            self.skip(True)
        for name, body in rules.items():
            for ref in _refs(body):
                if ref not in rules:
                    raise GrammarSyntaxError(f"undefined rule {ref!r} (used in {name!r})")
        return rules

    def alternates(self, nested: bool):
        options = [self.sequence(nested)]
        while self.peek() == "|":
            self.i += 1
            self.skip(True)
            options.append(self.sequence(nested))
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def sequence(self, nested: bool):
        items: list = []
        while True:
            c = self.peek()
            if c == '"':
                self.i += 1
                chars = []
                while self.peek() != '"':
                    chars.append(chr(self.char()))
                self.i += 1
                items.append(Lit("".join(chars)))
            elif c == "[":
                self.i += 1
                negated = self.peek() == "^"
                if negated:
                    self.i += 1
                ranges = []
                while self.peek() != "]":
                    lo = self.char()
                    hi = lo
                    if self.peek() == "-" and self.s[self.i + 1:self.i + 2] not in ("]", ""):
                        self.i += 1
                        hi = self.char()
                    ranges.append((lo, hi))
                self.i += 1
                items.append(Cls(tuple(ranges), negated))
            elif c in ("<", "!"):
                raise self.error("token syntax is not supported by the oracle")
            elif c and c in _NAME_CHARS:
                items.append(Ref(self.name()))
            elif c == "(":
                self.i += 1
                self.skip(True)
                inner = self.alternates(nested=True)
                if self.peek() != ")":
                    raise self.error("expected )")
                self.i += 1
                items.append(inner)
            elif c == ".":
                self.i += 1
                items.append(AnyChar())
            elif c in ("*", "+", "?", "{"):
                if not items:
                    raise self.error(f"nothing to repeat before {c}")
                self.i += 1
                if c == "*":
                    lo, hi = 0, None
                elif c == "+":
                    lo, hi = 1, None
                elif c == "?":
                    lo, hi = 0, 1
                else:
                    self.skip(nested)
                    lo = self.int_()
                    self.skip(nested)
                    if self.peek() == "}":
                        hi = lo
                    elif self.peek() == ",":
                        self.i += 1
                        self.skip(nested)
                        hi = self.int_() if self.peek().isdigit() else None
                        self.skip(nested)
                        if self.peek() != "}":
                            raise self.error("expected }")
                    else:
                        raise self.error("expected , or }")
                    self.i += 1
                    if hi is not None and hi < lo:
                        raise self.error("repetition max below min")
                items[-1] = Rep(items[-1], lo, hi)
            else:
                break
            self.skip(nested)
        return items[0] if len(items) == 1 else Seq(tuple(items))


def _refs(node):
    if isinstance(node, Ref):
        yield node.name
    elif isinstance(node, Seq):
        for item in node.items:
            yield from _refs(item)
    elif isinstance(node, Alt):
        for option in node.options:
            yield from _refs(option)
    elif isinstance(node, Rep):
        yield from _refs(node.item)


# --- matcher --------------------------------------------------------------------------------

class Grammar:
    """A parsed grammar that can decide membership of strings."""

    def __init__(self, text: str):
        self.rules = _Parser(text).grammar()

    def accepts(self, text: str, root: str = "root") -> bool:
        if root not in self.rules:
            raise GrammarSyntaxError(f"no rule named {root!r}")
        return len(text) in _Matcher(self.rules, text).rule(root, 0)


class _Matcher:
    def __init__(self, rules: dict, text: str):
        self.rules = rules
        self.text = text
        self.memo: dict[tuple[str, int], frozenset[int]] = {}
        self.active: set[tuple[str, int]] = set()

    def rule(self, name: str, pos: int) -> frozenset[int]:
        key = (name, pos)
        found = self.memo.get(key)
        if found is not None:
            return found
        if key in self.active:
            raise GrammarSyntaxError(f"left recursion through rule {name!r}")
        self.active.add(key)
        try:
            result = frozenset(self.match(self.rules[name], pos))
        finally:
            self.active.discard(key)
        self.memo[key] = result
        return result

    def match(self, node, pos: int) -> set[int]:
        text = self.text
        if isinstance(node, Lit):
            return {pos + len(node.text)} if text.startswith(node.text, pos) else set()
        if isinstance(node, Cls):
            return {pos + 1} if pos < len(text) and node.has(ord(text[pos])) else set()
        if isinstance(node, AnyChar):
            return {pos + 1} if pos < len(text) else set()
        if isinstance(node, Ref):
            return set(self.rule(node.name, pos))
        if isinstance(node, Seq):
            current = {pos}
            for item in node.items:
                nxt: set[int] = set()
                for p in current:
                    nxt |= self.match(item, p)
                if not nxt:
                    return nxt
                current = nxt
            return current
        if isinstance(node, Alt):
            out: set[int] = set()
            for option in node.options:
                out |= self.match(option, pos)
            return out
        if isinstance(node, Rep):
            return self.repeat(node, pos)
        raise TypeError(node)

    def repeat(self, node: Rep, pos: int) -> set[int]:
        current = {pos}
        out = {pos} if node.lo == 0 else set()
        count = 0
        seen_after_min: set[int] = set(out)
        while current and (node.hi is None or count < node.hi):
            nxt: set[int] = set()
            for p in current:
                nxt |= self.match(node.item, p)
            count += 1
            if count >= node.lo:
                if node.hi is None:
                    nxt -= seen_after_min  # unbounded: only new positions can lead anywhere new
                out |= nxt
                seen_after_min |= nxt
            current = nxt
        return out


@lru_cache(maxsize=256)
def parse_grammar(text: str) -> Grammar:
    """Parse (and cache) a GBNF grammar."""
    return Grammar(text)


def accepts(grammar_text: str, string: str, root: str = "root") -> bool:
    """True when ``string`` is in the language of rule ``root`` of ``grammar_text``."""
    limit = sys.getrecursionlimit()
    if limit < 20000:
        sys.setrecursionlimit(20000)
    try:
        return parse_grammar(grammar_text).accepts(string, root)
    finally:
        sys.setrecursionlimit(limit)


# --- sampler --------------------------------------------------------------------------------

_SAMPLE_CHARS = [*range(0x20, 0x7F), 0x09, 0x0A, 0x0D, 0x00, 0x1F, 0x85, 0xA0, 0xE9, 0x1C, 0x2028, 0x3000,
                 0xFEFF, 0x0663, 0x4E2D, 0xD7FF, 0xE000, 0xFFFD, 0x1F600, 0x10FFFF]
"""Code points a negated class or ``.`` draws from: ASCII plus the usual troublemakers (controls,
Unicode spaces and digits, the BOM, the edges of the surrogate block, astral characters)."""


class _Sampler:
    """Random derivations; past ``budget`` characters every choice takes its shortest way out."""

    def __init__(self, rules: dict, rng, budget: int):
        self.rules = rules
        self.rng = rng
        self.budget = budget
        self.out: list[str] = []
        self.size = 0
        self.shortest = self._shortest_lengths()

    def _shortest_lengths(self) -> dict[str, float]:
        inf = float("inf")
        best = {name: inf for name in self.rules}
        changed = True
        while changed:
            changed = False
            for name, node in self.rules.items():
                n = self._min(node, best)
                if n < best[name]:
                    best[name] = n
                    changed = True
        return best

    def _min(self, node, best) -> float:
        if isinstance(node, Lit):
            return len(node.text)
        if isinstance(node, (Cls, AnyChar)):
            return 1
        if isinstance(node, Ref):
            return best.get(node.name, float("inf"))
        if isinstance(node, Seq):
            return sum(self._min(i, best) for i in node.items)
        if isinstance(node, Alt):
            return min(self._min(o, best) for o in node.options)
        if isinstance(node, Rep):
            return node.lo * self._min(node.item, best) if node.lo else 0
        raise TypeError(node)

    def emit(self, text: str) -> None:
        self.out.append(text)
        self.size += len(text)

    def char(self, node) -> None:
        if isinstance(node, Cls) and not node.negated:
            lo, hi = self.rng.choice(node.ranges)
            cp = lo if self.rng.random() < 0.2 else hi if self.rng.random() < 0.2 else self.rng.randint(lo, hi)
            self.emit(chr(cp))
            return
        options = [c for c in _SAMPLE_CHARS if not isinstance(node, Cls) or node.has(c)]
        self.emit(chr(self.rng.choice(options)))

    def run(self, node) -> None:
        if isinstance(node, Lit):
            self.emit(node.text)
        elif isinstance(node, (Cls, AnyChar)):
            self.char(node)
        elif isinstance(node, Ref):
            self.run(self.rules[node.name])
        elif isinstance(node, Seq):
            for item in node.items:
                self.run(item)
        elif isinstance(node, Alt):
            finite = [o for o in node.options if self._min(o, self.shortest) < float("inf")]
            if self.size >= self.budget:
                self.run(min(finite, key=lambda o: self._min(o, self.shortest)))
            else:
                self.run(self.rng.choice(finite))
        elif isinstance(node, Rep):
            hi = node.lo + 4 if node.hi is None else node.hi
            spread = self.rng.choice([node.lo, hi, self.rng.randint(node.lo, min(hi, node.lo + 6))])
            count = node.lo if self.size >= self.budget else spread
            for k in range(count):
                if k >= node.lo and self.size >= self.budget:
                    break
                self.run(node.item)
        else:
            raise TypeError(node)


def sample(grammar_text: str, rng, root: str = "root", budget: int = 200) -> str:
    """A random string of the grammar's language (``rng``: a ``random.Random``).

    Choices are uniform (repetitions favour their bounds); once ``budget`` characters are
    written, every alternative and repetition takes its shortest way out, so recursive
    grammars end. Negated classes and ``.`` draw from :data:`_SAMPLE_CHARS`.
    """
    rules = parse_grammar(grammar_text).rules
    limit = sys.getrecursionlimit()
    if limit < 20000:
        sys.setrecursionlimit(20000)
    try:
        sampler = _Sampler(rules, rng, budget)
        sampler.run(rules[root])
        return "".join(sampler.out)
    finally:
        sys.setrecursionlimit(limit)
