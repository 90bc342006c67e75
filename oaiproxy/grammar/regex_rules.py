"""An ECMA-262 pattern (parsed by :mod:`oaiproxy.grammar.regex`) as GBNF over JSON-encoded characters.

The string inside a JSON value is escaped text, so each character class becomes the union of its
raw characters and their escape sequences; ``minLength``/``maxLength`` are folded into the
pattern when that can be done exactly.
"""

from __future__ import annotations

from typing import Literal

from oaiproxy.grammar import charsets as cs
from oaiproxy.grammar import regex as rx
from oaiproxy.grammar.builder import GrammarBuilder, is_symbol, quant
from oaiproxy.grammar.limits import MAX_COUNT


class RegexRules:
    """Regex AST -> GBNF over JSON-encoded characters."""

    def __init__(self, builder: GrammarBuilder, name: str):
        self.b = builder
        self.name = name

    def compile(self, node: rx.Node) -> str | None:
        if isinstance(node, rx.Chars):
            if not node.set:
                return None
            return self.chars(node.set)
        if isinstance(node, rx.Seq):
            parts: list[str] = []
            literal = ""
            for item in node.items:
                if isinstance(item, rx.Chars) and len(item.set) == 1 and item.set[0][0] == item.set[0][1] \
                        and 0x20 <= item.set[0][0] < 0x7F and chr(item.set[0][0]) not in '"\\':
                    literal += chr(item.set[0][0])
                    continue
                if literal:
                    parts.append(cs.gbnf_literal(literal))
                    literal = ""
                c = self.compile(item)
                if c is None:
                    return None
                if c:
                    parts.append(c)
            if literal:
                parts.append(cs.gbnf_literal(literal))
            return " ".join(parts)
        if isinstance(node, rx.Alt):
            opts = []
            empty = False
            for o in node.options:
                c = self.compile(o)
                if c is None:
                    continue
                if c == "":
                    empty = True
                elif c not in opts:
                    opts.append(c)
            if not opts:
                return "" if empty else None
            inner = "(" + " | ".join(opts) + ")"
            return inner + "?" if empty else inner
        if isinstance(node, rx.Repeat):
            c = self.compile(node.item)
            if c is None:
                return "" if node.lo == 0 else None
            if c == "" or node.hi == 0:
                return ""
            if not (is_symbol(c) and not c.startswith("(")) or (c.startswith('"') and len(c) > 3):
                c = self.b.add_rule(f"{self.name}-part", c)
            return quant(c, node.lo, node.hi)
        raise TypeError(node)

    def chars(self, s: cs.Intervals) -> str:
        expr = self.b.json_char(s, self.name) or ""
        if is_symbol(expr):
            return expr
        return self.b.add_rule(f"{self.name}-char", expr)


def intersect_length(
    body: rx.Node, start: bool, end: bool, lo: int, hi: int | None
) -> rx.Node | Literal[False] | None:
    """Fold minLength/maxLength into a regex body when that can be done exactly.

    Returns the (possibly tightened) body, False when no string qualifies, or
    None when the combination is beyond a grammar-friendly rewrite.
    """
    if not (start and end):
        return None
    plo, phi = rx.length_bounds(body)
    if plo >= lo and (hi is None or (phi is not None and phi <= hi)):
        return body
    if hi is not None and plo > hi:
        return False
    items = list(body.items) if isinstance(body, rx.Seq) else [body]
    variable = [i for i, it in enumerate(items) if rx.length_bounds(it)[0] != rx.length_bounds(it)[1]]
    if len(variable) != 1:
        return None
    idx = variable[0]
    rep = items[idx]
    if not (isinstance(rep, rx.Repeat) and isinstance(rep.item, rx.Chars)):
        return None
    fixed = plo - rep.lo
    new_lo = max(rep.lo, lo - fixed)
    new_hi = rep.hi
    if hi is not None:
        new_hi = hi - fixed if new_hi is None else min(new_hi, hi - fixed)
    if new_hi is not None and new_hi < new_lo:
        return False
    if new_lo > MAX_COUNT or (new_hi is not None and new_hi > MAX_COUNT):
        return None
    items[idx] = rx.Repeat(rep.item, new_lo, new_hi)
    return rx.Seq(tuple(items)) if len(items) > 1 else items[0]


# --- schema helpers -------------------------------------------------------------------------
