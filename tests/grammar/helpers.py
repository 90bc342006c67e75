"""Shared checks: a schema's grammar accepts exactly the valid instances, in every json.dumps spelling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from oaiproxy.grammar import schema_to_gbnf
from tests.gbnf_oracle import accepts

CORPUS_DIR = Path(__file__).parent / "corpus"


def spellings(value: Any) -> list[str]:
    """Every canonical way json.dumps writes ``value``: both separator styles, ensure_ascii on and off."""
    out = []
    for ensure_ascii in (True, False):
        for separators in ((", ", ": "), (",", ":")):
            text = json.dumps(value, ensure_ascii=ensure_ascii, separators=separators)
            if text not in out:
                out.append(text)
    return out


def check(schema: Any, valid: list[Any] = (), invalid: list[Any] = ()) -> str:
    """Assert the grammar accepts every spelling of each valid instance and none of the invalid ones.

    The instances are first checked against jsonschema itself, so a wrong expectation in a
    test cannot pass unnoticed.
    """
    grammar = schema_to_gbnf(schema)
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)(schema)
    for value in valid:
        assert validator.is_valid(value), f"test bug: {value!r} is not valid"
        for text in spellings(value):
            assert accepts(grammar, text), f"valid instance rejected: {text}\n{grammar}"
    for value in invalid:
        assert not validator.is_valid(value), f"test bug: {value!r} is valid"
        for text in spellings(value):
            assert not accepts(grammar, text), f"invalid instance accepted: {text}\n{grammar}"
    return grammar


def corpus() -> dict[str, Any]:
    files = sorted(CORPUS_DIR.glob("*.json"))
    assert len(files) >= 15, f"grammar corpus missing or too small in {CORPUS_DIR}"
    return {f.stem: json.loads(f.read_text()) for f in files}
