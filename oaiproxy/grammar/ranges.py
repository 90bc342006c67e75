"""Numeric ranges as digit-by-digit GBNF, exact and linear in the number of digits.

Integer bounds (``minimum`` … on ``integer``) and bounded ``number`` values
(plain decimal notation) are written as alternatives over digit classes, the
classic regex-range construction: ``[37, 512]`` becomes ``"3" [7-9] | [4-9]
[0-9] | [1-4] [0-9]{2} | "5" "0" [0-9] | "51" [0-2]``. The number of
alternatives grows with the number of digits, never with the width of the range.
"""

from __future__ import annotations

from decimal import Decimal

DigitGroup = tuple[int, int, int]
"""(low digit, high digit, how many positions in a row)."""

UNBOUNDED_DIGITS = 20
"""An integer with no upper bound is written with at most this many digits (covers 64-bit)."""

FRACTION_DIGITS = 20
"""Longest fraction written for a number; a bound keeps small models from looping on digits."""

EXPONENT_DIGITS = 3


def fixed_width_range(lo: int, hi: int, width: int, base: int = 10) -> list[list[DigitGroup]]:
    """Alternatives of exactly ``width`` digits (leading zeros included) whose value is in [lo, hi]."""
    if not (0 <= lo <= hi < base ** width):
        raise ValueError(f"bad range {lo}..{hi} for {width} digits")

    def digits(v: int) -> list[int]:
        out = []
        for _ in range(width):
            out.append(v % base)
            v //= base
        return out[::-1]

    top = base - 1

    def rec(a: list[int], b: list[int]) -> list[list[DigitGroup]]:
        n = len(a)
        if n == 0:
            return [[]]
        if all(d == 0 for d in a) and all(d == top for d in b):
            return [[(0, top, n)]]
        if a[0] == b[0]:
            return [[(a[0], a[0], 1), *alt] for alt in rec(a[1:], b[1:])]
        alts: list[list[DigitGroup]] = []
        low_full = all(d == 0 for d in a[1:])
        high_full = all(d == top for d in b[1:])
        start = a[0] if low_full else a[0] + 1
        end = b[0] if high_full else b[0] - 1
        if not low_full:
            alts += [[(a[0], a[0], 1), *alt] for alt in rec(a[1:], [top] * (n - 1))]
        if start <= end:
            alts.append([(start, end, 1)] + ([(0, top, n - 1)] if n > 1 else []))
        if not high_full:
            alts += [[(b[0], b[0], 1), *alt] for alt in rec([0] * (n - 1), b[1:])]
        return alts

    return [_compress(alt) for alt in rec(digits(lo), digits(hi))]


def _compress(groups: list[DigitGroup]) -> list[DigitGroup]:
    out: list[DigitGroup] = []
    for lo, hi, n in groups:
        if out and out[-1][0] == lo and out[-1][1] == hi and lo != hi:
            out[-1] = (lo, hi, out[-1][2] + n)
        else:
            out.append((lo, hi, n))
    return out


def render_digits(groups: list[DigitGroup]) -> str:
    """GBNF sequence for decimal digit groups: literals for fixed digits, classes for ranges."""
    parts: list[str] = []
    pending = ""
    for lo, hi, n in groups:
        if lo == hi:
            pending += str(lo) * n
            continue
        if pending:
            parts.append(f'"{pending}"')
            pending = ""
        cls = f"[{lo}-{hi}]" if hi > lo + 1 else f"[{lo}{hi}]"
        parts.append(cls if n == 1 else f"{cls}{{{n}}}")
    if pending:
        parts.append(f'"{pending}"')
    return " ".join(parts)


def natural_range(lo: int, hi: int | None, max_digits: int = UNBOUNDED_DIGITS) -> list[str]:
    """Alternatives for canonical non-negative integers (no leading zeros) in [lo, hi].

    ``hi=None`` means "up to ``max_digits`` digits". Returns [] when the range is empty.
    """
    lo = max(lo, 0)
    if hi is not None and hi < lo:
        return []
    lo_len = len(str(lo))
    if hi is None:
        hi_len = max(max_digits, lo_len)
        hi = 10 ** hi_len - 1
    hi_len = len(str(hi))
    alts: list[str] = []
    full_from: int | None = None  # first length of a run of "all numbers of this length"
    full_to = 0

    def flush() -> None:
        nonlocal full_from
        if full_from is None:
            return
        if full_from == 1:
            alts.append('"0"')
            if full_to > 1:
                alts.append(f"[1-9] [0-9]{{0,{full_to - 1}}}")
            else:
                alts.append("[1-9]")
        elif full_from == full_to:
            alts.append("[1-9]" + (f" [0-9]{{{full_from - 1}}}" if full_from > 2 else " [0-9]"))
        else:
            alts.append(f"[1-9] [0-9]{{{full_from - 1},{full_to - 1}}}")
        full_from = None

    for length in range(lo_len, hi_len + 1):
        first = 0 if length == 1 else 10 ** (length - 1)
        last = 10 ** length - 1
        a, b = max(lo, first), min(hi, last)
        if a > b:
            continue
        if a == first and b == last:
            if full_from is None:
                full_from = length
            full_to = length
            continue
        flush()
        alts.extend(render_digits(g) for g in fixed_width_range(a, b, length))
    flush()
    return alts


def integer_range(lo: int | None, hi: int | None, max_digits: int = UNBOUNDED_DIGITS) -> list[str]:
    """Alternatives for JSON integers in [lo, hi] (None: unbounded on that side); [] when empty."""
    if lo is not None and hi is not None and lo > hi:
        return []
    alts: list[str] = []
    if hi is None or hi >= 0:
        alts += natural_range(max(lo, 0) if lo is not None else 0, hi, max_digits)
    if lo is None or lo < 0:
        mag_lo = max(1, -hi) if hi is not None else 1
        mag_hi = -lo if lo is not None else None
        neg = natural_range(mag_lo, mag_hi, max_digits)
        if neg:
            body = neg[0] if len(neg) == 1 else "(" + " | ".join(neg) + ")"
            alts.append('"-" ' + body)
    return alts


# --- bounded decimals ------------------------------------------------------------------------

_ANY_TAIL = f"[0-9]{{0,{FRACTION_DIGITS}}}"


def _fraction(lo: str | None, lo_op: str, hi: str | None, hi_op: str) -> str | None:
    """GBNF for an optional fraction part (``"." digits`` or nothing) within bounds.

    ``lo``/``hi`` are the bounds' fraction digits (None: no bound on that side at
    this integer part); ops are ``>=``/``>`` and ``<=``/``<``. Digits are compared as
    fractions, so a missing digit counts as 0. Returns None when nothing qualifies,
    ``""`` when only "no fraction" (or zeros) qualify without a mandatory digit.
    """

    def digit(bound: str | None, i: int) -> int:
        return int(bound[i]) if bound is not None and i < len(bound) else 0

    def rest_zero(bound: str | None, i: int) -> bool:
        return bound is None or all(c == "0" for c in bound[i:])

    def state(i: int, tl: bool, th: bool) -> tuple[list[str], bool]:
        """(non-empty digit-string alternatives, whether the empty string qualifies) from position i."""
        tl = tl and lo is not None
        th = th and hi is not None
        empty_ok = True
        if tl and not (rest_zero(lo, i) and lo_op == ">="):
            empty_ok = False
        if th and rest_zero(hi, i) and hi_op == "<":
            empty_ok = False
        if not tl and not th:
            return [f"[0-9]{{1,{FRACTION_DIGITS}}}"], True
        if tl and rest_zero(lo, i) and not th:
            if lo_op == ">=":
                return [f"[0-9]{{1,{FRACTION_DIGITS}}}"], True
            return [f"[0-9]{{0,{FRACTION_DIGITS}}} [1-9] {_ANY_TAIL}"], False
        if th and rest_zero(hi, i) and not tl:
            if hi_op == "<=":
                return [f'"0"{{1,{FRACTION_DIGITS}}}'], True
            return [], False
        if tl and th and rest_zero(lo, i) and rest_zero(hi, i):
            ok = lo_op == ">=" and hi_op == "<="
            return ([f'"0"{{1,{FRACTION_DIGITS}}}'] if ok else []), ok
        a = digit(lo, i) if tl else 0
        b = digit(hi, i) if th else 9
        alts: list[str] = []
        for d in sorted({a, b}):
            nxt_alts, nxt_empty = state(i + 1, tl and d == a, th and d == b)
            if not nxt_alts and not nxt_empty:
                continue
            if not nxt_alts:
                alts.append(f'"{d}"')
                continue
            choice = " | ".join(nxt_alts)
            if nxt_empty:
                alts.append(f'"{d}" ({choice})?')
            elif len(nxt_alts) == 1:
                alts.append(f'"{d}" {choice}')
            else:
                alts.append(f'"{d}" ({choice})')
        if b - a > 1:
            mid = f"[{a + 1}-{b - 1}]" if b - a > 2 else f'"{a + 1}"'
            alts.append(f"{mid} {_ANY_TAIL}")
        return alts, empty_ok

    alts, empty_ok = state(0, True, True)
    if not alts:
        return '""' if empty_ok else None
    body = '"." ' + (alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")")
    return f"({body})?" if empty_ok else body


def _split(value: Decimal) -> tuple[int, str]:
    """Integer part and fraction digits (no trailing zeros) of a non-negative decimal."""
    integral = int(value)
    frac = value - integral
    digits = format(frac, "f").partition(".")[2].rstrip("0") if frac else ""
    return integral, digits


def magnitude_range(lo: Decimal | None, lo_excl: bool, hi: Decimal | None, hi_excl: bool) -> list[str]:
    """Alternatives for non-negative decimals ``I[.F]`` (plain notation) with lo <(=) value <(=) hi.

    ``lo`` defaults to 0 inclusive; ``hi=None`` is unbounded. Returns [] when empty.
    """
    if lo is None:
        lo, lo_excl = Decimal(0), False
    if hi is not None and (hi < lo or (hi == lo and (lo_excl or hi_excl))):
        return []
    lo_op = ">" if lo_excl else ">="
    hi_op = "<" if hi_excl else "<="
    li, lf = _split(lo)
    alts: list[str] = []

    def add(int_alts: list[str], frac: str | None) -> None:
        if frac is None:
            return
        for ia in int_alts:
            alts.append(ia if frac == '""' else f"{ia} {frac}")

    frac_any = _fraction(None, ">=", None, "<=")
    if hi is None:
        add(natural_range(li, li), _fraction(lf, lo_op, None, hi_op))
        add(natural_range(li + 1, None), frac_any)
        return alts
    hi_i, hf = _split(hi)
    if li == hi_i:
        add(natural_range(li, li), _fraction(lf, lo_op, hf, hi_op))
        return alts
    add(natural_range(li, li), _fraction(lf, lo_op, None, hi_op))
    if hi_i - 1 >= li + 1:
        add(natural_range(li + 1, hi_i - 1), frac_any)
    add(natural_range(hi_i, hi_i), _fraction(None, lo_op, hf, hi_op))
    return alts


def decimal_range(lo: Decimal | None, lo_excl: bool, hi: Decimal | None, hi_excl: bool) -> list[str]:
    """Alternatives for JSON numbers in plain decimal notation (no exponent) within the bounds."""
    alts: list[str] = []
    zero = Decimal(0)
    # x >= 0 (written without a sign)
    if hi is None or hi > zero or (hi == zero and not hi_excl):
        if lo is None or lo < zero:
            alts += magnitude_range(zero, False, hi, hi_excl)
        else:
            alts += magnitude_range(lo, lo_excl, hi, hi_excl)
    # x < 0, written "-" m with m > 0
    if lo is None or lo < zero:
        m_lo, m_lo_excl = (-hi, hi_excl) if hi is not None and hi < zero else (zero, True)
        m_hi, m_hi_excl = (-lo, lo_excl) if lo is not None else (None, False)
        neg = magnitude_range(m_lo, m_lo_excl, m_hi, m_hi_excl)
        if neg:
            alts.append('"-" ' + (neg[0] if len(neg) == 1 else "(" + " | ".join(neg) + ")"))
    return alts
