"""Longest string a grammar admits (None when unbounded), from the oracle's parse: sizes n_predict honestly."""

from __future__ import annotations

from tests import gbnf_oracle as g


def longest(grammar_text: str, root: str = "root") -> int | None:
    rules = g.parse_grammar(grammar_text).rules
    memo: dict[str, int | None] = {}
    active: set[str] = set()

    def rule(name: str) -> int | None:
        if name in memo:
            return memo[name]
        if name in active:
            return None  # recursion: unbounded
        active.add(name)
        result = node(rules[name])
        active.discard(name)
        memo[name] = result
        return result

    def node(n) -> int | None:
        if isinstance(n, g.Lit):
            return len(n.text)
        if isinstance(n, (g.Cls, g.AnyChar)):
            return 1
        if isinstance(n, g.Ref):
            return rule(n.name)
        if isinstance(n, g.Seq):
            total = 0
            for item in n.items:
                m = node(item)
                if m is None:
                    return None
                total += m
            return total
        if isinstance(n, g.Alt):
            best = 0
            for option in n.options:
                m = node(option)
                if m is None:
                    return None
                best = max(best, m)
            return best
        if isinstance(n, g.Rep):
            m = node(n.item)
            if m is None or (n.hi is None and m > 0):
                return None
            return m * (n.hi or 0)
        raise TypeError(n)

    return rule(root)
