"""``allOf``: the intersection of two schemas written as one schema, so the converter sees one."""

from __future__ import annotations

from typing import Any

from oaiproxy.grammar.errors import SchemaError
from oaiproxy.grammar.keywords import ANNOTATIONS, TYPES, json_equal
from oaiproxy.grammar.regex import length_only

_MERGE_MIN = ("minLength", "minItems", "minimum", "exclusiveMinimum")
_MERGE_MAX = ("maxLength", "maxItems", "maximum", "exclusiveMaximum")


def merge_schemas(a: Any, b: Any, where: str) -> Any:
    """Intersection of two schemas as one schema (False when unsatisfiable)."""
    if a is False or b is False:
        return False
    if a is True:
        return b if isinstance(b, dict) else {}
    if b is True:
        return a
    if not isinstance(a, dict) or not isinstance(b, dict):
        raise SchemaError("allOf parts must be schemas", keyword="allOf", pointer=where)
    out = dict(a)
    for key, bv in b.items():
        if key in ANNOTATIONS or key in ("$defs", "definitions"):
            out.setdefault(key, bv)
            continue
        if key not in out:
            out[key] = bv
            continue
        av = out[key]
        if json_equal(av, bv):
            continue
        if key == "type":
            ta = [av] if isinstance(av, str) else av
            tb = [bv] if isinstance(bv, str) else bv
            if not isinstance(ta, list) or not isinstance(tb, list):
                raise SchemaError("'type' must be a type name or an array of them", keyword="type", pointer=where)
            ta2 = set(ta) | ({"integer"} if "number" in ta else set())
            tb2 = set(tb) | ({"integer"} if "number" in tb else set())
            both = [t for t in TYPES if t in ta2 and t in tb2]
            if not both:
                return False
            out[key] = both
        elif key == "required":
            out[key] = list(dict.fromkeys(list(av) + list(bv)))
        elif key == "properties":
            if not isinstance(av, dict) or not isinstance(bv, dict):
                raise SchemaError("'properties' must be an object", keyword="properties", pointer=where)
            props = dict(av)
            for name, sub in bv.items():
                props[name] = {"allOf": [props[name], sub]} if name in props else sub
            out[key] = props
        elif key in _MERGE_MIN and not isinstance(av, bool) and not isinstance(bv, bool):
            out[key] = max(av, bv)
        elif key in _MERGE_MAX and not isinstance(av, bool) and not isinstance(bv, bool):
            out[key] = min(av, bv)
        elif key == "enum":
            out[key] = [v for v in av if any(json_equal(v, w) for w in bv)]
            if not out[key]:
                return False
        elif key == "const":
            return False
        elif key in ("items", "additionalProperties", "additionalItems") and isinstance(av, (dict, bool)) \
                and isinstance(bv, (dict, bool)):
            out[key] = {"allOf": [av, bv]}
        elif key == "pattern" and isinstance(av, str) and isinstance(bv, str) \
                and (length := length_only(av) or length_only(bv)) is not None:
            out[key] = bv if length_only(av) == length else av  # the other pattern; the length as keywords
            lo, hi = length
            out["minLength"] = max(out.get("minLength", 0), lo)
            if hi is not None:
                out["maxLength"] = min(out.get("maxLength", hi), hi)
            if length_only(out[key]) == (0, None):
                del out[key]
        elif key in ("anyOf", "oneOf"):
            out.setdefault("allOf", [])
            out["allOf"] = list(out.get("allOf", [])) + [{key: bv}]
        else:
            raise SchemaError(f"cannot merge two different '{key}' in allOf", keyword=key, pointer=where)
    # an object part that forbids extra properties forbids the other parts' properties too
    for part in (a, b):
        if isinstance(part, dict) and part.get("additionalProperties") is False and "properties" in out:
            allowed = set(part.get("properties", {}))
            out["properties"] = {k: v for k, v in out["properties"].items() if k in allowed}
            if any(r not in allowed for r in out.get("required", [])):
                return False
    return out
