"""JSON Schema rendered as TypeScript declarations, the compact tool description small models read best.

Functionary showed that models follow TypeScript signatures well and they cost
far fewer tokens than JSON Schema. Only the shape matters here (the grammar
enforces the details), so keywords without a TypeScript counterpart become
comments or are dropped.
"""

from __future__ import annotations

import json
from typing import Any

from oaiproxy.conversation.model import ToolSpec

_MAX_DEPTH = 8


def ts_type(schema: Any, depth: int = 0, indent: str = "") -> str:
    """A TypeScript type for a JSON Schema."""
    if depth > _MAX_DEPTH or schema is True or not isinstance(schema, dict) or not schema:
        return "any"
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema and isinstance(schema["enum"], list):
        return " | ".join(json.dumps(v) for v in schema["enum"]) or "never"
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return " | ".join(ts_type(s, depth + 1, indent) for s in schema[key]) or "never"
    if isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
        return ts_type(schema["allOf"][0], depth + 1, indent)
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(ts_type({**schema, "type": k}, depth + 1, indent) for k in kind) or "never"
    if kind == "string":
        return "string"
    if kind in ("integer", "number"):
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind == "null":
        return "null"
    if kind == "array" or "items" in schema or "prefixItems" in schema:
        if isinstance(schema.get("prefixItems"), list):
            return "[" + ", ".join(ts_type(s, depth + 1, indent) for s in schema["prefixItems"]) + "]"
        inner = ts_type(schema.get("items", {}), depth + 1, indent)
        return f"({inner})[]" if "|" in inner else f"{inner}[]"
    if kind == "object" or "properties" in schema:
        return ts_object(schema, depth, indent)
    return "any"


def ts_object(schema: dict[str, Any], depth: int = 0, indent: str = "") -> str:
    props = schema.get("properties") or {}
    if not isinstance(props, dict) or not props:
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"{{ [key: string]: {ts_type(extra, depth + 1, indent)} }}"
        return "{}" if extra is False else "object"
    listed = schema.get("required")
    required = {r for r in listed if isinstance(r, str)} if isinstance(listed, list) else set()
    inner = indent + "  "
    lines = ["{"]
    for name, sub in props.items():
        desc = sub.get("description") if isinstance(sub, dict) else None
        if desc:
            lines.append(f"{inner}// {' '.join(str(desc).split())}")
        optional = "" if name in required else "?"
        key = name if name.isidentifier() else json.dumps(name)
        lines.append(f"{inner}{key}{optional}: {ts_type(sub, depth + 1, inner)};")
    lines.append(indent + "}")
    return "\n".join(lines)


def ts_signature(spec: ToolSpec) -> str:
    """``// description`` + ``function name(args: {...}): any;``."""
    head = f"// {' '.join(spec.description.split())}\n" if spec.description else ""
    return f"{head}function {spec.name}(args: {ts_object(spec.parameters or {})}): any;"
