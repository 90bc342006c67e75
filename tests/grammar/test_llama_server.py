"""Against the real llama-server on the default model: every grammar loads, and sampled values validate.

Cheap by design (a 270M model, n_predict 1 for loading, one seed per short grammar
for generation), but honest: n_predict is the longest text the grammar admits, so a
sample can never be cut short silently — a truncated sample fails the test.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

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


#: the sampled part is sized for a loaded 2-core machine: only grammars whose longest string is short
#: (n_predict is that length, so a sample is never cut), one seed each, about 2,000 tokens in all
SAMPLED_BOUND = 300
SEED = 1


def _sampled_jobs() -> list[tuple[str, dict, str, int]]:
    from tests.grammar.test_differential import REGRESSIONS

    schemas = dict(corpus())
    schemas.update({f"regression-{i}": {"type": "object", "properties": {"v": s}, "required": ["v"],
                                        "additionalProperties": False} for i, s in enumerate(REGRESSIONS)})
    jobs = []
    for name, schema in schemas.items():
        grammar = schema_to_gbnf(schema)
        bound = longest(grammar)
        if bound is not None and bound <= SAMPLED_BOUND:
            jobs.append((name, schema, grammar, bound))
    return jobs


def test_sampled_values_validate(upstream):
    """Samples from the real model under each grammar pass the proxy's own final check.

    The real-model half of ``test_differential.py``: what llama-server generates under
    the grammar must pass ``validate_tool_calls`` — the validator the proxy runs, with its
    format checker and its reading of ``pattern`` — or an ordinary request would be a 500.
    Only grammars with a short longest string are sampled: n_predict is that length (a
    token is at least one character), so no sample can be cut short. The unbounded and
    long ones are covered by the loading test above and by the oracle's sampler.
    """
    from oaiproxy.conversation.model import ToolCall, ToolSpec
    from oaiproxy.validation import validate_tool_calls

    jobs = _sampled_jobs()
    assert len(jobs) >= 15, "keep enough short grammars for the sample to mean something"

    def sample(job):
        name, schema, grammar, bound = job
        result = upstream.post("/completion", {
            "prompt": f"Arguments for the {name} tool, as compact JSON:\n",
            "grammar": grammar, "temperature": 1.0, "seed": SEED, "n_predict": bound, "cache_prompt": False,
        }, timeout=600)
        text = result["content"]
        problems = []
        if result.get("stop_type") == "limit" or result.get("stopped_limit"):
            problems.append(f"cut by n_predict={bound}")
        else:
            assert accepts(grammar, text), f"{name}: llama-server produced text outside the grammar: {text!r}"
            spec = ToolSpec(name=name, parameters=schema, extra_keys=True)  # schema_to_gbnf: open objects
            problems += validate_tool_calls([ToolCall(id="c1", name=name, arguments=text)], [spec])
        return f"{name}: {'; '.join(problems)}: {text[:200]!r}" if problems else None

    with ThreadPoolExecutor(2) as pool:
        failures = [f for f in pool.map(sample, jobs) if f]
    assert not failures, "\n".join(failures)
