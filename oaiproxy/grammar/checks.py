"""Is this a JSON Schema at all? Size and nesting bounds, then the draft meta-schemas.

Run before any conversion, so nothing recursive meets a hostile document, and a schema that no
draft accepts is refused with the meta-schema's own best message and the place it points at.
"""

from __future__ import annotations

import json
import math
from functools import cache, lru_cache
from typing import Any

from oaiproxy.grammar.errors import SchemaError, json_pointer
from oaiproxy.grammar.limits import MAX_JSON_NESTING, MAX_SCHEMA_NODES


def check_shape(schema: Any) -> None:
    """Bound the JSON nesting and size of the schema document before anything recursive touches it."""
    stack = [(schema, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_SCHEMA_NODES:
            raise SchemaError(f"schema has more than {MAX_SCHEMA_NODES} nodes")
        if depth > MAX_JSON_NESTING:
            raise SchemaError(f"schema nesting exceeds the limit of {MAX_JSON_NESTING}")
        if isinstance(node, dict):
            for k, v in node.items():
                if not isinstance(k, str):
                    raise SchemaError("schema object keys must be strings")
                stack.append((v, depth + 1))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, float) and not math.isfinite(node):
            raise SchemaError("schema contains a non-finite number")
        elif not (node is None or isinstance(node, (str, int, float, bool))):
            raise SchemaError(f"schema contains a non-JSON value of type {type(node).__name__}")


def check_schema(schema: Any) -> None:
    """Raise SchemaError unless ``schema`` is a valid JSON Schema (2020-12, draft 7 or draft 4)."""
    check_shape(schema)
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise SchemaError("a schema must be an object or a boolean")
    _check_metaschema(json.dumps(schema))


@cache
def _meta_validator(cls: Any) -> Any:
    return cls(cls.META_SCHEMA)


@lru_cache(maxsize=512)
def _check_metaschema(text: str) -> None:
    import jsonschema
    from jsonschema.exceptions import best_match

    schema = json.loads(text)
    first_error = None
    for cls in (jsonschema.Draft202012Validator, jsonschema.Draft7Validator, jsonschema.Draft4Validator):
        try:
            error = best_match(_meta_validator(cls).iter_errors(schema))
        except RecursionError:
            raise SchemaError("schema is nested too deeply") from None
        if error is None:
            return
        if first_error is None:
            first_error = error
    assert first_error is not None
    path = list(first_error.path)
    keyword = next((p for p in reversed(path) if isinstance(p, str)), None)
    pointer = json_pointer("", *path)
    raise SchemaError(f"invalid schema: {first_error.message}", keyword=keyword, pointer=pointer)
