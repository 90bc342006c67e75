"""Whatever JSON a client sends as the grammar lab's schema, the answer is a grammar or a 400 naming
``schema``, never a 500 (random schema-like documents, drawn by hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from oaiproxy.api.ui.routes import _convert
from oaiproxy.errors import BadRequest

KEYWORDS = ["type", "properties", "items", "required", "enum", "const", "minimum", "maximum", "minLength",
            "maxLength", "pattern", "format", "anyOf", "oneOf", "allOf", "not", "$ref", "$defs",
            "additionalProperties", "minItems", "maxItems", "prefixItems", "uniqueItems", "multipleOf"]
TYPES = st.sampled_from(["string", "integer", "number", "boolean", "object", "array", "null", "strnig"])
scalars = st.none() | st.booleans() | st.integers(-5, 50) | st.floats(-10, 10, allow_nan=False) | TYPES \
    | st.sampled_from(["#/nowhere", "#", "#/$defs/a", "^[a-z]+$", "(?=x)", "date-time", "a", "[", "x{2,3}"])
schemas = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYWORDS + ["a", "b"]), inner,
                                                                max_size=4),
    max_leaves=12)


@settings(max_examples=300)
@given(schemas)
def test_any_document_is_a_grammar_or_a_400_naming_schema(schema: Any) -> None:
    try:
        gbnf = _convert(schema)
    except BadRequest as exc:
        assert exc.param == "schema" and exc.code == "invalid_schema" and exc.message.startswith("schema")
    else:
        assert "root ::=" in gbnf
