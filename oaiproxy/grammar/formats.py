"""GBNF for string ``format`` values (the text between the quotes).

Each entry says whether it is *exact* (admits precisely the valid values) or a
*subset* (admits only valid values but not all of them — safe, since every
generated value still validates). Every format here is plain ASCII, so no JSON
escaping is involved. A format not listed is an annotation only (as in JSON
Schema 2020-12 by default) and leaves the string unconstrained.

``FORMATS[name]`` is (rules, note): rules maps full rule names to bodies; the
entry rule is ``fmt-<name>``.
"""

from __future__ import annotations

_HOUR = '([01] [0-9] | "2" [0-3])'
_MINUTE = "[0-5] [0-9]"
_LABEL = "[a-zA-Z0-9] ([a-zA-Z0-9-]{0,61} [a-zA-Z0-9])?"
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
_TIME = {
    "fmt-time": f'{_HOUR} ":" {_MINUTE} ":" ([0-5] [0-9] | "60") ("." [0-9]{{1,9}})?'
                f' ([zZ] | [+-] {_HOUR} ":" {_MINUTE})',
}

FORMATS: dict[str, tuple[dict[str, str], str]] = {
    "date": (_DATE, "exact (RFC 3339 full-date; years 0001-9999; leap years respected)"),
    "time": (_TIME, "exact (RFC 3339 full-time, offset required; at most 9 fraction digits)"),
    "date-time": ({"fmt-date-time": "fmt-date [tT] fmt-time", **_DATE, **_TIME},
                  "exact (RFC 3339 date-time; at most 9 fraction digits)"),
    "uuid": ({"fmt-uuid": "fmt-hex{8} \"-\" fmt-hex{4} \"-\" fmt-hex{4} \"-\" fmt-hex{4} \"-\" fmt-hex{12}",
              "fmt-hex": "[0-9a-fA-F]"}, "exact (either case)"),
    "ipv4": ({"fmt-ipv4": f'{_OCTET} "." {_OCTET} "." {_OCTET} "." {_OCTET}'},
             "exact (dotted quad, no leading zeros)"),
    "hostname": ({"fmt-hostname": 'fmt-label ("." fmt-label){0,8}', "fmt-label": _LABEL},
                 "subset (letters, digits, hyphens; at most 9 labels)"),
    "email": ({"fmt-email": 'fmt-atom ("." fmt-atom){0,4} "@" fmt-label ("." fmt-label){0,4} "." [a-zA-Z]{2,24}',
               "fmt-atom": "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,32}", "fmt-label": _LABEL},
              "subset (dot-atom local part; dotted domain ending in a letter TLD)"),
    "uri": ({"fmt-uri": '[a-zA-Z] [a-zA-Z0-9+.-]{0,15} ":" fmt-uri-char{1,500}',
             "fmt-uri-char": "[a-zA-Z0-9._~:/?#@!$&'()*+,;=%\\x5B\\x5D-]"},
            "loose (scheme, colon, URI characters; percent-escapes unchecked)"),
}
