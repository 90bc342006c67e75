"""Against the real llama-server on the default model: every grammar loads, and sampled values validate.

Cheap by design (a 270M model, n_predict 1 for loading, two seeds per schema for
generation), but honest: n_predict is the longest text the grammar admits, so a
sample can never be cut short silently — a truncated sample fails the test.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

from oaiproxy.grammar import GrammarBuilder, schema_to_gbnf
from tests.gbnf_oracle import accepts
from tests.grammar.helpers import corpus
from tests.grammar.lengths import longest

pytestmark = pytest.mark.integration

# Schemas from the keyword tests that exercise unusual grammar shapes.
SHAPES = [
    {},
    {"type": "string", "pattern": "^a.c$"},
    {"type": "string", "pattern": "^[^0-9\\s]*\\u00e9[\\u0100-\\u017F]+$"},
    {"type": "string", "pattern": "ab"},
    {"type": "string", "minLength": 2, "maxLength": 5000},
    {"type": "integer", "minimum": -10**30, "maximum": 10**30 - 7},
    {"type": "number", "minimum": 0.25, "exclusiveMaximum": 0.5},
    {"enum": [f"value number {i}" for i in range(300)] + ["é", 'quote"d', None, 1.5, {"a": [1]}]},
    {"type": "object", "properties": {"clé": {"type": "string"}, 'a"b': {"type": "integer"}}, "required": ["clé"]},
    {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": {"type": "boolean"}},
    {"type": "object", "properties": {"next": {"$ref": "#"}}, "additionalProperties": False},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "email"},
    {"type": "string", "format": "uri"},
]


def _grammars() -> list[tuple[str, str]]:
    out = [(name, schema_to_gbnf(schema)) for name, schema in corpus().items()]
    out += [(f"shape-{i}", schema_to_gbnf(schema)) for i, schema in enumerate(SHAPES)]
    builder = GrammarBuilder(additional_properties=False)
    calls = []
    for name, schema in list(corpus().items())[:3]:
        head = builder.literal('<tool_call>{"name": ' + json.dumps(name) + ', "arguments": ')
        calls.append(f'{head} {builder.add_schema(schema, name)} "}}</tool_call>"')
    out.append(("builder", builder.to_gbnf("(" + " | ".join(calls) + ")")))
    return out


def test_every_grammar_loads_in_llama_server(upstream):
    grammars = _grammars()
    assert len(grammars) >= 30

    def load(item):
        name, grammar = item
        try:
            upstream.post("/completion", {"prompt": "{", "n_predict": 1, "grammar": grammar, "cache_prompt": False})
        except RuntimeError as e:  # the fixture raises on HTTP errors: an invalid grammar is a 400
            return f"{name}: {e}"
        return None

    with ThreadPoolExecutor(2) as pool:
        failures = [f for f in pool.map(load, grammars) if f]
    assert not failures, "\n".join(failures)


def test_an_invalid_grammar_would_be_noticed(upstream):
    """Guards the test above: llama-server really refuses a broken grammar."""
    with pytest.raises(RuntimeError, match="400"):
        upstream.post("/completion", {"prompt": "{", "n_predict": 1, "grammar": "root ::= undefined-rule"})


SEEDS = (1, 2)


def test_sampled_values_validate(upstream):
    """Two high-temperature samples per corpus schema all parse and validate with jsonschema.

    Only schemas whose grammar has a longest string are sampled: n_predict is that
    length (a token is at least one character), so no sample can be cut short. The
    unbounded ones (recursion, open-ended extra properties) are covered by the
    loading test above and by the oracle tests.
    """
    jobs = []
    for name, schema in corpus().items():
        grammar = schema_to_gbnf(schema)
        bound = longest(grammar)
        if bound is None:
            continue
        for seed in SEEDS:
            jobs.append((name, schema, grammar, bound, seed))
    assert len({job[0] for job in jobs}) >= 15, "the corpus must be mostly bounded so n_predict can be honest"

    def sample(job):
        name, schema, grammar, bound, seed = job
        n_predict = bound
        result = upstream.post("/completion", {
            "prompt": f"Arguments for the {name} tool, as compact JSON:\n",
            "grammar": grammar, "temperature": 1.5, "seed": seed, "n_predict": n_predict, "cache_prompt": False,
        }, timeout=600)
        text = result["content"]
        problems = []
        if result.get("stop_type") == "limit" or result.get("stopped_limit"):
            problems.append(f"cut by n_predict={n_predict} (grammar bound {bound})")
        else:
            assert accepts(grammar, text), f"{name}: llama-server produced text outside the grammar: {text!r}"
            try:
                jsonschema.validate(json.loads(text), schema)
            except (ValueError, jsonschema.ValidationError) as e:
                problems.append(f"invalid: {str(e).splitlines()[0]}")
        return f"{name} seed {seed}: {'; '.join(problems)}: {text[:200]!r}" if problems else None

    with ThreadPoolExecutor(2) as pool:
        failures = [f for f in pool.map(sample, jobs) if f]
    assert not failures, "\n".join(failures)
