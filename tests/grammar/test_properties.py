"""Property tests: generated instances in every spelling are accepted; random near-misses are decided exactly."""

from __future__ import annotations

import json
import re

import jsonschema
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from oaiproxy.grammar import schema_to_gbnf
from tests.gbnf_oracle import accepts
from tests.grammar.helpers import spellings
from tests.hypothesis_profiles import examples

FAST = settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children,
                                                                                 max_size=3)),
    max_leaves=8,
)


@FAST
@given(json_values)
def test_any_value_schema_accepts_every_json_value(value):
    grammar = schema_to_gbnf({})
    for text in spellings(value):
        assert accepts(grammar, text), text


@FAST
@given(st.text(max_size=12))
def test_strings_with_any_characters(text):
    grammar = schema_to_gbnf({"type": "string", "maxLength": 12})
    for spelled in spellings(text):
        assert accepts(grammar, spelled), spelled
    assert not accepts(schema_to_gbnf({"type": "string", "maxLength": max(len(text) - 1, 0)}),
                       json.dumps(text)) or len(text) == 0


@FAST
@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6), st.integers(-3 * 10**6, 3 * 10**6))
def test_integer_ranges(a, b, v):
    lo, hi = min(a, b), max(a, b)
    grammar = schema_to_gbnf({"type": "integer", "minimum": lo, "maximum": hi})
    assert accepts(grammar, str(v)) == (lo <= v <= hi)
    assert accepts(grammar, str(lo)) and accepts(grammar, str(hi))


@FAST
@given(st.decimals(-1000, 1000, places=3), st.decimals(-1000, 1000, places=3), st.booleans(), st.booleans(),
       st.decimals(-1100, 1100, places=4))
def test_number_ranges(a, b, lo_excl, hi_excl, v):
    lo, hi = min(a, b), max(a, b)
    schema = {"type": "number", ("exclusiveMinimum" if lo_excl else "minimum"): float(lo),
              ("exclusiveMaximum" if hi_excl else "maximum"): float(hi)}
    try:
        grammar = schema_to_gbnf(schema)
    except Exception as e:  # an empty range is refused
        assert "admits no value" in str(e)
        return
    value = float(v)
    text = json.dumps(value)
    assume("e" not in text)  # bounded numbers are written in plain notation
    valid = jsonschema.Draft202012Validator(schema).is_valid(value)
    assert accepts(grammar, text) == valid, (schema, text)


PATTERNS = [
    r"^[a-z]{2,5}-\d{1,3}$",
    r"^(red|green|blue)(/(red|green|blue))*$",
    r"^[A-Z][a-z]*( [A-Z][a-z]*)?$",
    r"^\+?[0-9]{1,3}[ -]?[0-9]{4,8}$",
    r"^[^@\s]+@[^@\s]+\.[a-z]{2,3}$",
    r"^x?y+z*$",
    r"^[\u00e0-\u00ff]{1,3}[0-9a-f]?$",
]


@FAST
@given(st.sampled_from(PATTERNS), st.data())
def test_pattern_matches_are_accepted(pattern, data):
    grammar = schema_to_gbnf({"type": "string", "pattern": pattern})
    # ECMA classes are ASCII-only for \d and \w; \s also covers Unicode spaces, which Python's ASCII \s does not
    unicode_spaces = set("\u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | {chr(c) for c in range(0x2000, 0x200B)}
    value = data.draw(st.from_regex(re.compile(pattern, re.ASCII), fullmatch=True)
                      .filter(lambda s: "\n" not in s and not unicode_spaces & set(s)))
    for text in spellings(value):
        assert accepts(grammar, text), (pattern, text)


@FAST
@given(st.sampled_from(PATTERNS), st.text(alphabet="abcxyz-+ @.0129RGBredgnlu/\u00e9\u00ff", max_size=10))
def test_pattern_non_matches_are_rejected(pattern, value):
    grammar = schema_to_gbnf({"type": "string", "pattern": pattern})
    assert accepts(grammar, json.dumps(value)) == (re.search(pattern, value) is not None), (pattern, value)
