"""Which JSON Schema keywords the grammar enforces, relaxes or refuses, and JSON equality.

One list, read by the converter, by :func:`oaiproxy.grammar.enforced_schema` (the schema the
validator checks) and by the ``allOf`` merge, so the three agree on what each keyword means.
"""

from __future__ import annotations

from typing import Any

ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "example", "$schema", "$id", "id", "$comment", "deprecated",
    "readOnly", "writeOnly", "$anchor", "contentEncoding", "contentMediaType", "contentSchema", "discriminator",
    "xml", "externalDocs", "$vocabulary", "$dynamicAnchor", "strict",
})
"""Keywords that never constrain a value."""

UNSUPPORTED = frozenset({
    "not", "if", "then", "else", "dependentRequired", "dependentSchemas", "dependencies", "patternProperties",
    "propertyNames", "unevaluatedProperties", "unevaluatedItems", "contains", "minContains", "maxContains",
    "minProperties", "maxProperties", "multipleOf", "$dynamicRef", "$recursiveRef", "$recursiveAnchor",
})
"""Keywords a context-free grammar cannot enforce exactly; refused rather than silently relaxed."""

RELAXED = frozenset({"uniqueItems"})
"""Keywords accepted but not enforced (the grammar admits a superset): see the docs."""

OBJECT_KEYS = frozenset({"properties", "required", "additionalProperties"})
ARRAY_KEYS = frozenset({"items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems"})
STRING_KEYS = frozenset({"minLength", "maxLength", "pattern", "format"})
NUMBER_KEYS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")
KNOWN = (ANNOTATIONS | UNSUPPORTED | RELAXED | OBJECT_KEYS | ARRAY_KEYS | STRING_KEYS | NUMBER_KEYS
          | {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "nullable"})


def json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b
