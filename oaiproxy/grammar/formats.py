"""GBNF for string ``format`` values (the text between the quotes), and the check that matches it.

Each format is built for an upper length bound (a schema's ``maxLength``, or the
format's own limit), so ``{"type": "string", "format": "email", "maxLength": 254}``
is enforced as both, never as one of them. A built grammar is *exact* (admits
precisely the valid values up to the bound) or a *subset* (admits only valid
values, not all of them — safe: every generated value still passes the check).
Every format here is plain ASCII, so no JSON escaping is involved.

:data:`FORMAT_CHECKER` is the check the proxy runs on every answer: it knows
exactly the formats this table enforces (any other ``format`` is an annotation
on both sides, see :func:`oaiproxy.grammar.enforced_schema`), using
``jsonschema``'s checks where it has one and the RFC's rules written out here
for ``hostname`` and ``uri`` (``jsonschema`` checks those only when optional
packages are installed; the proxy must not change behaviour with them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import jsonschema

_HOUR = '([01] [0-9] | "2" [0-3])'
_MINUTE = "[0-5] [0-9]"
_OCTET = '("25" [0-5] | "2" [0-4] [0-9] | "1" [0-9] [0-9] | [1-9] [0-9] | [0-9])'

_DATE = {
    # years 0001-9999 (Python's date range), every day of every month, Feb 29 only in leap years
    "fmt-date": 'fmt-year "-" fmt-month-day | fmt-leap-year "-02-29"',
    "fmt-year": '[1-9] [0-9]{3} | "0" [1-9] [0-9]{2} | "00" [1-9] [0-9] | "000" [1-9]',
    "fmt-month-day": '("01" | "03" | "05" | "07" | "08" | "10" | "12") "-" ("0" [1-9] | [12] [0-9] | "3" [01])'
                     ' | ("04" | "06" | "09" | "11") "-" ("0" [1-9] | [12] [0-9] | "30")'
                     ' | "02-" ("0" [1-9] | "1" [0-9] | "2" [0-8])',
    # divisible by 4 and not by 100, or by 400; year 0000 excluded
    "fmt-leap-year": '[0-9] [0-9] ("0" [48] | [2468] [048] | [13579] [26])'
                     ' | ("0" [48] | [2468] [048] | [13579] [26]) "00"',
}

Rules = dict[str, str]


@dataclass(frozen=True)
class Format:
    """One enforced format: ``build(hi)`` gives (rules, entry rule) for values of at most ``hi``
    characters, or None when no value is that short. ``shortest`` is the shortest value the
    built grammars admit; ``longest`` the longest any valid value can be (None: no limit)."""

    build: Callable[[int], tuple[Rules, str] | None]
    shortest: int
    longest: int | None
    note: str


def _fixed(rules: Rules, entry: str, length: int) -> Callable[[int], tuple[Rules, str] | None]:
    return lambda hi: (rules, entry) if hi >= length else None


def _time_rules(hi: int, suffix: str) -> tuple[Rules, str] | None:
    """RFC 3339 full-time of at most ``hi`` characters: fewer fraction digits, and no numeric
    offset when it does not fit (``HH:MM:SS`` is 8, ``Z`` 1, ``+HH:MM`` 6, ``.f…`` 1 + digits)."""
    if hi < 9:
        return None
    core = f'{_HOUR} ":" {_MINUTE} ":" [0-5] [0-9]'  # no leap second: the check (rfc3339-validator) refuses it

    def frac(digits: int) -> str:
        digits = min(9, digits)
        return "" if digits < 1 else f' ("." [0-9]{{1,{digits}}})?'

    alts = [f"{frac(hi - 10)} [zZ]"]
    if hi >= 14:
        alts.append(f'{frac(hi - 15)} [+-] {_HOUR} ":" {_MINUTE}')
    name = f"fmt-time{suffix}"
    return {name: f"{core} ({' | '.join(a.strip() for a in alts)})"}, name


def _time(hi: int) -> tuple[Rules, str] | None:
    return _time_rules(hi, "" if hi >= 24 else f"-{hi}")


def _date_time(hi: int) -> tuple[Rules, str] | None:
    time = _time_rules(hi - 11, "" if hi >= 35 else f"-{hi - 11}")
    if time is None:
        return None
    rules, entry = time
    name = "fmt-date-time" if hi >= 35 else f"fmt-date-time-{hi}"
    return {name: f"fmt-date [tT] {entry}", **_DATE, **rules}, name


def _ipv4(hi: int) -> tuple[Rules, str] | None:
    digits = min(3, (hi - 3) // 4)
    if digits < 1:
        return None
    octet = {3: _OCTET, 2: "([1-9] [0-9] | [0-9])", 1: "[0-9]"}[digits]
    name = "fmt-ipv4" if digits == 3 else f"fmt-ipv4-{digits}"
    return {name: f'{octet} "." {octet} "." {octet} "." {octet}'}, name


def _label(most: int, first: str = "[a-zA-Z0-9]") -> str:
    """A DNS label (RFC 1123) of 1..most characters, starting with ``first``."""
    if most <= 1:
        return first
    return f"{first} ([a-zA-Z0-9-]{{0,{most - 2}}} [a-zA-Z0-9])?"


def _split(budget: int, most_parts: int, longest_part: int) -> tuple[int, int]:
    """(extra parts, part length) so that parts of that length joined by dots fit in ``budget``."""
    for extra in range(most_parts - 1, -1, -1):
        length = min(longest_part, (budget - extra) // (extra + 1))
        if length >= 4 or extra == 0:
            return extra, max(length, 1)
    return 0, 1  # pragma: no cover - the loop always returns


def _dotted(parts: tuple[int, int], first: str = "[a-zA-Z0-9]") -> str:
    extra, length = parts
    last = _label(length, first)
    if not extra:
        return last
    return f'({_label(length)} ".")' + (f"{{0,{extra}}}" if extra > 1 else "?") + f" {last}"


def _hostname(hi: int) -> tuple[Rules, str] | None:
    # at most 253 characters (RFC 1123 / DNS), labels of at most 63, the last one starting with a letter
    # (an all-numeric top label reads as an IP address)
    cap = min(hi, 253)
    if cap < 1:
        return None
    name = "fmt-hostname" if cap == 253 else f"fmt-hostname-{cap}"
    return {name: _dotted(_split(cap, 4, 63), "[a-zA-Z]")}, name


def _email(hi: int) -> tuple[Rules, str] | None:
    # local@domain, at most 254 characters (RFC 5321), local part at most 64, a letter TLD of 2..24
    cap = min(hi, 254)
    if cap < 6:  # a@b.cc
        return None
    local = min(64, max(1, (cap - 5) // 3))
    domain = cap - 1 - local
    tld = min(24, domain - 2, max(2, domain // 3))
    labels = domain - 1 - tld
    extra_atoms, atom = _split(local, 4, 32)
    atom_rule = f"[a-zA-Z0-9!#$%&'*+/=?^_`{{|}}~-]{{1,{atom}}}"
    local_rule = f'{atom_rule} ("." {atom_rule}){{0,{extra_atoms}}}' if extra_atoms else atom_rule
    name = "fmt-email" if cap == 254 else f"fmt-email-{cap}"
    return {name: f'{local_rule} "@" {_dotted(_split(labels, 3, 63))} "." [a-zA-Z]{{2,{tld}}}'}, name


_URI_UNRESERVED = "a-zA-Z0-9._~"  # and "-", written last in each class (elsewhere it makes a range)
_URI_SUB_DELIMS = "!$&'()*+,;="
_PCHAR = f"[{_URI_UNRESERVED}{_URI_SUB_DELIMS}:@-]"
_PATH_CHAR = f"[{_URI_UNRESERVED}{_URI_SUB_DELIMS}:@/-]"
_QUERY_CHAR = f"[{_URI_UNRESERVED}{_URI_SUB_DELIMS}:@/?-]"
_HOST_CHAR = f"[{_URI_UNRESERVED}{_URI_SUB_DELIMS}-]"


def _uri(hi: int) -> tuple[Rules, str] | None:
    """RFC 3986 absolute URIs, a subset: ``scheme:`` then either ``//host[:port]/path`` or a path,
    then ``?query`` and ``#fragment``, each optional; no percent-escapes; lengths shared out within ``hi``."""
    cap = min(hi, 2000)
    if cap < 3:  # a:b
        return None
    scheme = min(16, max(1, cap // 8))
    rest = cap - scheme - 1
    scheme_rule = "[a-zA-Z]" + (f" [a-zA-Z0-9+.-]{{0,{scheme - 1}}}" if scheme > 1 else "")
    alts = []
    if rest >= 16:
        q = rest // 8  # "?query" and "#fragment", each at most q characters
        tail = f' ("?" {_QUERY_CHAR}{{0,{q - 1}}})? ("#" {_QUERY_CHAR}{{0,{q - 1}}})?'
        host = min(253, rest // 3)
        path = rest - 2 - host - 6 - 2 * q
        alts.append(f'"//" {_HOST_CHAR}{{0,{host}}} (":" [0-9]{{1,5}})? ("/" {_PATH_CHAR}{{0,{path - 1}}})?{tail}')
        # no authority: the path's first character is not "/", or it is "/" and the second is not
        first = rest - 2 * q
        alts.append(f'(("/" {_PCHAR} | {_PCHAR}) {_PATH_CHAR}{{0,{first - 2}}} | "/"){tail}')
    else:
        alts.append(f"{_PCHAR} {_PCHAR}{{0,{rest - 1}}}" if rest > 1 else _PCHAR)
    name = "fmt-uri" if cap == 2000 else f"fmt-uri-{cap}"
    return {name: f'{scheme_rule} ":" ({" | ".join(alts)})'}, name


_UUID = {"fmt-uuid": 'fmt-hex{8} "-" fmt-hex{4} "-" fmt-hex{4} "-" fmt-hex{4} "-" fmt-hex{12}',
         "fmt-hex": "[0-9a-fA-F]"}

FORMATS: dict[str, Format] = {
    "date": Format(_fixed(_DATE, "fmt-date", 10), 10, 10,
                   "exact (RFC 3339 full-date; years 0001-9999; leap years respected)"),
    "time": Format(_time, 9, None,
                   "exact (RFC 3339 full-time, offset required; at most 9 fraction digits; no leap second)"),
    "date-time": Format(_date_time, 20, None, "exact (RFC 3339 date-time; at most 9 fraction digits; no leap second)"),
    "uuid": Format(_fixed(_UUID, "fmt-uuid", 36), 36, 36, "exact (either case)"),
    "ipv4": Format(_ipv4, 7, 15, "exact (dotted quad, no leading zeros)"),
    "hostname": Format(_hostname, 1, 253, "subset (RFC 1123 labels of letters, digits and hyphens, at most 4 "
                                          "labels and 253 characters; the last label starts with a letter)"),
    "email": Format(_email, 6, 254, "subset (dot-atom local part of at most 64 characters; dotted domain "
                                    "ending in a letter TLD; at most 254 characters)"),
    "uri": Format(_uri, 3, None, "subset (RFC 3986 `scheme:`, `//host[:port]/path` or a path, "
                                 "`?query`, `#fragment`; no percent-escapes; at most 2000 characters)"),
}
"""The formats the grammar enforces; any other ``format`` is an annotation (not enforced, not checked)."""


def format_rules(name: str, hi: int | None) -> tuple[Rules, str] | None:
    """Rules and entry rule for ``format: name`` with at most ``hi`` characters (None: the format's own
    limit); None when no valid value is that short."""
    fmt = FORMATS[name]
    return fmt.build(10_000 if hi is None else hi)


def all_format_rule_names() -> frozenset[str]:
    """Every rule name any format may define (for the builder's name reservation)."""
    names: set[str] = set()
    for fmt in FORMATS.values():
        built = fmt.build(10_000)
        if built:
            names.update(built[0])
    return frozenset(names)


# --- the check ------------------------------------------------------------------------------

_HOST_LABEL = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\Z")


def is_hostname(instance: object) -> bool:
    """RFC 1123 host name: labels of 1-63 letters, digits and inner hyphens, 253 characters in all,
    the last label not all digits (that is an IPv4 address's last part)."""
    if not isinstance(instance, str):
        return True
    if not instance or len(instance) > 253:
        return False
    labels = instance.split(".")
    return all(_HOST_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


# RFC 3986 appendix B's splitting expression, then each part checked against its own characters
_URI_PARTS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*):(//([^/?#]*))?([^?#]*)(\?([^#]*))?(#(.*))?\Z", re.S)
_PCT = "%[0-9a-fA-F]{2}"
_U, _S = re.escape("._~-"), re.escape(_URI_SUB_DELIMS)
_RE_USERINFO = re.compile(rf"(?:[a-zA-Z0-9{_U}{_S}:]|{_PCT})*\Z")
_RE_HOST = re.compile(rf"(?:[a-zA-Z0-9{_U}{_S}]|{_PCT})*\Z|\[[0-9a-fA-F:.vV]+\]\Z")
_RE_PATH = re.compile(rf"(?:[a-zA-Z0-9{_U}{_S}:@/]|{_PCT})*\Z")
_RE_QUERY = re.compile(rf"(?:[a-zA-Z0-9{_U}{_S}:@/?]|{_PCT})*\Z")


def is_uri(instance: object) -> bool:
    """RFC 3986 ``URI`` (absolute, fragment allowed): scheme, authority, path, query, fragment."""
    if not isinstance(instance, str):
        return True
    m = _URI_PARTS.match(instance)
    if not m:
        return False
    authority, path, query, fragment = m.group(3), m.group(4), m.group(6), m.group(8)
    if authority is not None:
        userinfo, _, hostport = authority.rpartition("@")
        if "@" in authority and not _RE_USERINFO.match(userinfo):
            return False
        host, port = hostport, ""
        if not hostport.endswith("]") and ":" in hostport:
            host, _, port = hostport.rpartition(":")
        if not port.isdigit() and port != "" or not _RE_HOST.match(host):
            return False
        if path and not path.startswith("/"):
            return False
    elif path.startswith("//"):
        return False
    return bool(_RE_PATH.match(path) and (query is None or _RE_QUERY.match(query))
                and (fragment is None or _RE_QUERY.match(fragment)))


def _format_checker() -> jsonschema.FormatChecker:
    base = jsonschema.Draft202012Validator.FORMAT_CHECKER
    checker = jsonschema.FormatChecker(formats=())
    own = {"hostname": is_hostname, "uri": is_uri}
    for name in FORMATS:
        if name in own:
            checker.checks(name)(own[name])
        elif name in base.checkers:
            func, raises = base.checkers[name]
            checker.checks(name, raises)(func)
    return checker


FORMAT_CHECKER = _format_checker()
"""The format check the proxy's validator uses: exactly the formats of :data:`FORMATS`."""
