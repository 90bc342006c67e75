"""Differential: whatever a grammar admits passes the proxy's final check, for every schema.

The grammar (built from a schema by the converter) and the validator (jsonschema
on the same schema, with the proxy's format checker) are two readings of one
document, :func:`oaiproxy.grammar.enforced_schema`. Where they disagree, an
ordinary request ends in a 500 "BUG invalid_tool_call" (seen: ``format: email``
beside ``maxLength``, where the grammar ignored the format). This test looks for
the next disagreement: strings drawn from the grammar by the GBNF oracle's
sampler, for the project's corpus and for generated schemas, in every mode of
closing objects, must validate — through ``validate_tool_calls``, the function
the engine calls. The real-model half (llama-server sampling under the grammar)
is in ``test_llama_server.py``.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from oaiproxy.conversation.model import ToolCall, ToolSpec
from oaiproxy.grammar import GrammarBuilder, SchemaError
from oaiproxy.validation import validate_tool_calls
from tests.gbnf_oracle import accepts, sample
from tests.grammar.helpers import corpus
from tests.hypothesis_profiles import examples

MODES = {"open": dict(extra_keys=True), "declared": dict(), "all": dict(strict=True)}
SAMPLES = 25


def _grammar(schema, spec: ToolSpec) -> str:
    builder = GrammarBuilder()
    return builder.to_gbnf(builder.add_schema(schema, "root", objects=spec.objects, strict=spec.strict))


def _disagreements(schema, spec: ToolSpec, rng: random.Random, n: int = SAMPLES) -> list[str]:
    grammar = _grammar(schema, spec)
    found = []
    for i in range(n):
        text = sample(grammar, rng, budget=rng.choice([0, 20, 120]))
        assert accepts(grammar, text), f"sampler bug: {text!r}"
        problems = validate_tool_calls([ToolCall(id=f"c{i}", name=spec.name, arguments=text)], [spec])
        if problems:
            found.append(f"{text[:300]!r}: {problems[0][:300]}")
    return found


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", sorted(corpus()))
def test_corpus_samples_pass_the_validator(name, mode):
    schema = corpus()[name]
    spec = ToolSpec(name=name, parameters=schema, **MODES[mode])
    try:
        _grammar(schema, spec)
    except SchemaError:
        pytest.skip("refused in this mode (strict with an open object)")
    bad = _disagreements(schema, spec, random.Random(f"{name}/{mode}"))
    assert not bad, "\n".join(bad[:5])


# Each case once found a disagreement (a 500 for an ordinary request); kept as regression cases.
REGRESSIONS = [
    {"type": "string", "format": "email", "maxLength": 254},  # the issue's send_mail: format ignored
    {"type": "string", "format": "email", "maxLength": 12},
    {"type": "string", "format": "date-time", "maxLength": 24},
    {"type": "string", "format": "uri", "maxLength": 40},
    {"type": "string", "format": "hostname"},  # labels over 253 characters in all
    {"type": "string", "format": "ipv6"},  # checked, not enforced
    {"type": "string", "format": "idn-email"},
    {"type": "string", "format": "regex"},
    {"type": "string", "format": "time"},  # leap second 60: the checker refuses it
    {"type": "string", "format": "email", "pattern": "^[a-z]+$"},  # pattern and format
    {"oneOf": [{"type": "integer"}, {"type": "number"}]},  # oneOf read as anyOf
    {"type": "array", "items": {"enum": [1, 2]}, "uniqueItems": True, "minItems": 2},
    {"type": "string", "nullable": True},  # OpenAPI nullable
    {"type": "integer", "minimum": -5, "exclusiveMinimum": True},  # draft-4 flag
    {"type": "string", "pattern": "^\\s$"},  # ECMA \s has U+FEFF, Python's does not
    {"type": "string", "pattern": "^\\W\\D$"},  # ECMA \W has é, Python's does not
    {"type": "string", "pattern": "^\\u{1F600}\\cJ(?<n>x)$"},  # ECMA syntax Python's re refuses
    {"type": "string", "format": "email", "enum": ["not an address", "a@b.cc"]},
    {"type": "object", "properties": {"a": {"type": "integer"}},
     "allOf": [{"properties": {"b": {"type": "string"}}, "required": ["b"]}]},
    {"type": "object", "properties": {"kind": {"type": "string"}},
     "anyOf": [{"properties": {"x": {"type": "integer"}}}, {"properties": {"y": {"type": "boolean"}}}]},
    {"$schema": "http://json-schema.org/draft-07/schema#", "type": "array",
     "items": [{"type": "integer"}], "additionalItems": {"type": "string"}},
    {"type": "number", "exclusiveMinimum": 0.1, "maximum": 0.2},
]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("schema", REGRESSIONS, ids=[json.dumps(s)[:60] for s in REGRESSIONS])
def test_regressions(schema, mode):
    wrapped = {"type": "object", "properties": {"v": schema}, "required": ["v"]}
    spec = ToolSpec(name="f", parameters=wrapped, **MODES[mode])
    try:
        _grammar(wrapped, spec)
    except SchemaError:
        if mode == "all":
            pytest.skip("refused with strict")
        raise
    bad = _disagreements(wrapped, spec, random.Random(json.dumps(schema) + mode), n=60)
    assert not bad, "\n".join(bad[:5])


# --- generated schemas ------------------------------------------------------------------------

_PATTERNS = ["^[a-z]{1,5}$", "^\\d{2,4}-\\w+$", "x", "^(ab|c)*$", "^\\S+\\s\\S+$", "^.{0,3}$", "[^a]", "^\\p"]
_FORMATS = ["date", "time", "date-time", "uuid", "ipv4", "hostname", "email", "uri", "ipv6", "regex",
            "json-pointer", "idn-hostname", "made-up"]
_numbers = st.one_of(st.integers(-1000, 1000), st.floats(-1000, 1000, allow_nan=False).map(lambda f: round(f, 3)))


def _strings() -> st.SearchStrategy:
    return st.fixed_dictionaries({"type": st.just("string")}, optional={
        "minLength": st.integers(0, 12), "maxLength": st.integers(0, 300),
        "pattern": st.sampled_from(_PATTERNS), "format": st.sampled_from(_FORMATS),
    })


def _numbers_schema() -> st.SearchStrategy:
    return st.fixed_dictionaries({"type": st.sampled_from(["integer", "number"])}, optional={
        "minimum": _numbers, "maximum": _numbers, "exclusiveMinimum": st.one_of(_numbers, st.booleans()),
        "exclusiveMaximum": _numbers,
    })


_leaves = st.one_of(
    _strings(), _numbers_schema(), st.just({"type": "boolean"}), st.just({"type": "null"}), st.just({}),
    st.builds(lambda v: {"enum": v}, st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=4), st.none(),
                                                        st.just("a@b.cc"), st.just(1.5)), min_size=1, max_size=4)),
    st.builds(lambda v: {"const": v}, st.one_of(st.integers(), st.text(max_size=5), st.booleans())),
)


def _compound(children: st.SearchStrategy) -> st.SearchStrategy:
    names = st.sampled_from(["a", "b", "c", "d"])
    obj = st.builds(
        lambda props, req, extra, nullable: {
            "type": ["object", "null"] if nullable else "object", "properties": props,
            **({"required": sorted(set(req) & set(props))} if req else {}),
            **({"additionalProperties": extra} if extra is not None else {})},
        st.dictionaries(names, children, max_size=3), st.lists(names, max_size=3),
        st.one_of(st.none(), st.booleans(), children), st.booleans())
    arr = st.builds(lambda items, lo, hi, unique: {"type": "array", "items": items, "minItems": lo,
                                                   **({"maxItems": lo + hi} if hi is not None else {}),
                                                   **({"uniqueItems": True} if unique else {})},
                    children, st.integers(0, 2), st.one_of(st.none(), st.integers(0, 3)), st.booleans())
    tup = st.builds(lambda pre, rest: {"type": "array", "prefixItems": pre, "items": rest},
                    st.lists(children, min_size=1, max_size=3), st.one_of(st.just(False), children))
    comb = st.builds(lambda key, branches: {key: branches}, st.sampled_from(["anyOf", "oneOf", "allOf"]),
                     st.lists(children, min_size=1, max_size=3))
    nullable = st.builds(lambda s: {**s, "nullable": True}, _strings())
    return st.one_of(obj, arr, tup, comb, nullable)


schemas = st.recursive(_leaves, _compound, max_leaves=8)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=schemas, mode=st.sampled_from(list(MODES)), seed=st.integers(0, 2**16))
@example(schema={"type": "string", "format": "email", "maxLength": 254}, mode="declared", seed=0)
@example(schema={"type": "string", "format": "time"}, mode="open", seed=3)
@example(schema={"type": "integer", "minimum": -5, "exclusiveMinimum": True}, mode="open", seed=0)
def test_generated_schemas_samples_pass_the_validator(schema, mode, seed):
    spec = ToolSpec(name="f", parameters=schema, **MODES[mode])
    try:
        _grammar(schema, spec)
    except SchemaError:
        return  # refused with a 400: no grammar, nothing to disagree about
    bad = _disagreements(schema, spec, random.Random(seed), n=12)
    assert not bad, "\n".join(bad[:3])
