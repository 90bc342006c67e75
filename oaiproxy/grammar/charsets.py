"""Code point sets and how a JSON string spells them, as GBNF.

A schema (a ``pattern``, an ``enum`` string, a property name) constrains the
*decoded* characters of a string, but the model writes the *encoded* JSON text:
``é`` may appear raw or as ``\\u00e9`` (``json.dumps`` with ``ensure_ascii``),
``"`` only as ``\\"``, a newline only as ``\\n``. Everything here maps a set of
code points to the GBNF for "one JSON-encoded character from this set", so the
grammar accepts exactly the spellings ``json.dumps`` produces (raw or escaped)
and counts every escape as the single character it stands for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache

from oaiproxy.grammar.ranges import fixed_width_range

MAX_CODE_POINT = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)

Intervals = tuple[tuple[int, int], ...]
"""Sorted, disjoint, non-adjacent inclusive code point intervals."""


def normalize(intervals: Iterable[tuple[int, int]]) -> Intervals:
    """Sort and merge intervals; drop the surrogate block (no JSON text decodes to a lone surrogate)."""
    items = sorted((lo, hi) for lo, hi in intervals if lo <= hi)
    merged: list[list[int]] = []
    for lo, hi in items:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple(_cut(merged, *SURROGATES))


def _cut(intervals: Iterable[Sequence[int]], cut_lo: int, cut_hi: int) -> Iterator[tuple[int, int]]:
    for lo, hi in intervals:
        if hi < cut_lo or lo > cut_hi:
            yield (lo, hi)
            continue
        if lo < cut_lo:
            yield (lo, cut_lo - 1)
        if hi > cut_hi:
            yield (cut_hi + 1, hi)


ALL: Intervals = normalize([(0, MAX_CODE_POINT)])


def complement(s: Intervals) -> Intervals:
    return normalize(complement_raw(s))


def intersect(a: Intervals, b: Intervals) -> Intervals:
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def union(*sets: Intervals) -> Intervals:
    return normalize([iv for s in sets for iv in s])


def single(cp: int) -> Intervals:
    return normalize([(cp, cp)])


def size(s: Intervals) -> int:
    return sum(hi - lo + 1 for lo, hi in s)


# --- GBNF spelling ----------------------------------------------------------------------------

def _escape_cp(cp: int, in_class: bool) -> str:
    c = chr(cp)
    if c == "\\":
        return "\\\\"
    if c == '"' and not in_class:
        return '\\"'
    if in_class and c in "[]-^\"":
        return f"\\x{cp:02X}"
    if c == "\n":
        return "\\n"
    if c == "\r":
        return "\\r"
    if c == "\t":
        return "\\t"
    if cp < 0x20 or cp == 0x7F or not c.isprintable() or c in "\u2028\u2029":
        if cp <= 0xFF:
            return f"\\x{cp:02X}"
        if cp <= 0xFFFF:
            return f"\\u{cp:04X}"
        return f"\\U{cp:08X}"
    return c


def gbnf_literal(text: str) -> str:
    """A quoted GBNF string literal matching exactly ``text``."""
    return '"' + "".join(_escape_cp(ord(c), in_class=False) for c in text) + '"'


def gbnf_class(s: Intervals, negated: bool = False) -> str:
    """A GBNF character class ``[...]`` for the code points in ``s``."""
    parts = []
    for lo, hi in s:
        if lo == hi:
            parts.append(_escape_cp(lo, True))
        elif hi == lo + 1:
            parts.append(_escape_cp(lo, True) + _escape_cp(hi, True))
        else:
            parts.append(_escape_cp(lo, True) + "-" + _escape_cp(hi, True))
    return "[" + ("^" if negated else "") + "".join(parts) + "]"


def gbnf_set(s: Intervals) -> str:
    """The cheapest single-character GBNF expression for ``s`` (a literal, a class, or a negated class)."""
    if len(s) == 1 and s[0][0] == s[0][1]:
        return gbnf_literal(chr(s[0][0]))
    positive = gbnf_class(s)
    negative = gbnf_class(complement_raw(s), negated=True)
    return negative if len(negative) < len(positive) else positive


def complement_raw(s: Intervals) -> Intervals:
    """Complement without dropping surrogates: for negated classes, which must not admit them either."""
    out = []
    prev = 0
    for lo, hi in s:
        if lo > prev:
            out.append((prev, lo - 1))
        prev = hi + 1
    if prev <= MAX_CODE_POINT:
        out.append((prev, MAX_CODE_POINT))
    return tuple(out)


# --- JSON string characters ------------------------------------------------------------------

_RAW_OK = normalize([(0x20, 0x21), (0x23, 0x5B), (0x5D, MAX_CODE_POINT)])
"""Code points JSON allows unescaped inside a string (not `"`, `\\`, or a control character)."""

_SHORT_ESCAPES = {0x22: '"', 0x5C: "\\", 0x08: "b", 0x0C: "f", 0x0A: "n", 0x0D: "r", 0x09: "t"}
"""Two-character escapes; ``json.dumps`` uses these for their characters."""

_U_ESCAPED = normalize([(0x00, 0x1F), (0x7F, MAX_CODE_POINT)])
"""Code points ``json.dumps`` may write as ``\\uXXXX``: control characters, and with
``ensure_ascii`` everything from DEL up (supplementary ones as surrogate pairs)."""

_ESCAPABLE = normalize([(0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, MAX_CODE_POINT)])
"""Every code point that has an escaped spelling."""

_HEX_DIGIT_CLASSES = "0123456789abcdef"


def _hex_class(lo: int, hi: int) -> str:
    """Case-insensitive class for hex digits lo..hi (0..15)."""
    digits = _HEX_DIGIT_CLASSES[lo:hi + 1]
    if lo == 0 and hi == 15:
        return "[0-9a-fA-F]"
    if lo == hi and lo < 10:
        return f'"{lo}"'
    ranges: list[tuple[int, int]] = []
    for d in range(lo, hi + 1):
        for c in {digits[d - lo], digits[d - lo].upper()}:
            ranges.append((ord(c), ord(c)))
    return gbnf_class(normalize(ranges))


def _hex4(lo: int, hi: int) -> list[str]:
    """Alternatives (GBNF sequences) spelling 4 hex digits with value in lo..hi, any case."""
    alts = []
    for digits in fixed_width_range(lo, hi, 4, 16):
        seq = []
        for dlo, dhi, count in digits:
            cls = _hex_class(dlo, dhi)
            seq.append(cls if count == 1 else f"{cls}{{{count}}}")
        alts.append(" ".join(seq))
    return alts


def _u_escapes(s: Intervals) -> list[str]:
    """Alternatives for ``\\uXXXX`` spellings (without the leading backslash) of code points in s."""
    alts: list[str] = []
    for lo, hi in s:
        if lo <= 0xFFFF:
            for hx in _hex4(lo, min(hi, 0xFFFF)):
                alts.append('"u" ' + hx)
        if hi >= 0x10000:
            alts.extend(_surrogate_pairs(max(lo, 0x10000), hi))
    return alts


def _surrogate_pairs(lo: int, hi: int) -> list[str]:
    def split(cp: int) -> tuple[int, int]:
        v = cp - 0x10000
        return 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF)

    hlo, llo = split(lo)
    hhi, lhi = split(hi)
    pieces: list[tuple[int, int, int, int]] = []
    if hlo == hhi:
        pieces.append((hlo, hlo, llo, lhi))
    else:
        pieces.append((hlo, hlo, llo, 0xDFFF))
        if hhi - hlo > 1:
            pieces.append((hlo + 1, hhi - 1, 0xDC00, 0xDFFF))
        pieces.append((hhi, hhi, 0xDC00, lhi))
    alts = []
    for h1, h2, l1, l2 in pieces:
        high = _hex4(h1, h2)
        low = _hex4(l1, l2)
        h = high[0] if len(high) == 1 else "(" + " | ".join(high) + ")"
        lw = low[0] if len(low) == 1 else "(" + " | ".join(low) + ")"
        alts.append(f'"u" {h} "\\\\u" {lw}')
    return alts


@lru_cache(maxsize=4096)
def json_char_parts(s: Intervals) -> tuple[str | None, str | None]:
    """(raw, escaped) GBNF for one JSON-encoded string character whose decoded value is in ``s``.

    ``raw`` covers characters JSON allows unescaped; ``escaped`` (backslash
    included) covers the short escapes and ``\\uXXXX`` for control characters and
    everything from DEL up (what ``ensure_ascii`` writes). Either may be None.
    """
    raw = intersect(s, _RAW_OK)
    raw_expr = gbnf_set(raw) if raw else None
    if s != ALL and intersect(s, _ESCAPABLE) == _ESCAPABLE:
        return raw_expr, json_char_parts(ALL)[1]  # same escapes as any character: share them
    escaped = []
    short = [chr(ord(_SHORT_ESCAPES[cp])) for cp in sorted(_SHORT_ESCAPES) if intersect(s, single(cp))]
    if short:
        escaped.append(gbnf_set(normalize([(ord(c), ord(c)) for c in short])))
    escaped.extend(_u_escapes(intersect(s, _U_ESCAPED)))
    esc_expr = None
    if escaped:
        esc_expr = '"\\\\" ' + (escaped[0] if len(escaped) == 1 else "(" + " | ".join(escaped) + ")")
    return raw_expr, esc_expr


def json_char(s: Intervals) -> str | None:
    """GBNF for one JSON-encoded string character whose decoded value is in ``s`` (None if empty)."""
    raw, esc = json_char_parts(s)
    alts = [a for a in (raw, esc) if a]
    if not alts:
        return None
    return alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")"


def json_text_pieces(text: str) -> list[str]:
    """GBNF sequence items spelling ``text`` inside a JSON string, any ``json.dumps`` spelling.

    Runs of plain ASCII become one literal; other characters become small alternations.
    """
    items: list[str] = []
    run: list[str] = []
    for c in text:
        cp = ord(c)
        if 0x20 <= cp < 0x7F and c not in '"\\':
            run.append(c)
            continue
        if run:
            items.append(gbnf_literal("".join(run)))
            run = []
        if 0xD800 <= cp <= 0xDFFF:
            raise ValueError("lone surrogate in string")
        items.append(json_char(single(cp)) or "")
    if run:
        items.append(gbnf_literal("".join(run)))
    return items


def json_string_literal(text: str) -> str:
    """GBNF for the JSON string token (quotes included) whose value is ``text``."""
    if all(0x20 <= ord(c) < 0x7F and c not in '"\\' for c in text):
        return gbnf_literal('"' + text + '"')
    return " ".join(['"\\""', *json_text_pieces(text), '"\\""'])
