"""The schema *as enforced*: the one description of "valid" that the grammar and the final check share.

A client's schema may say more than a grammar can enforce (``oneOf``,
``uniqueItems``, a ``format`` nobody wrote a grammar for), or leave open what
the proxy closes (undeclared keys). If the grammar enforced one thing and the
validator checked another, an ordinary request would end in a failed check —
a 500 — or, the other way round, an unchecked promise. So both read the schema
through :func:`enforced_schema`, which rewrites it into plain JSON Schema
2020-12 that the converter turns into a grammar *exactly*:

* ``oneOf`` becomes ``anyOf`` (the grammar cannot count matching branches);
* ``uniqueItems`` is dropped (the grammar cannot compare items);
* ``format`` stays only when the grammar enforces it (:data:`~oaiproxy.grammar.formats.FORMATS`)
  and no ``pattern`` sits beside it (a pattern and a format cannot be intersected), otherwise it is
  an annotation on both sides;
* ``allOf`` is merged and siblings of ``anyOf``/``$ref`` are distributed, as the converter reads
  them, so that closing objects applies to the merged object and not to each part;
* object schemas are closed (``additionalProperties: false`` where the keyword is absent) when
  ``objects`` says so: ``"open"`` never (JSON Schema), ``"declared"`` when they declare
  ``properties`` (tool arguments by default: a small model otherwise invents keys; an object
  without ``properties`` is a free-form map and stays open), ``"all"`` always;
* ``strict`` (OpenAI's ``strict: true``) closes every object and refuses an explicit
  ``additionalProperties`` other than ``false``;
* draft-4/7 spellings (boolean ``exclusiveMinimum``, array ``items``), OpenAPI's ``nullable``,
  ``$schema`` and ``$id`` are rewritten to their 2020-12 meaning.

:func:`validator` gives the check for an enforced schema: ``jsonschema``'s 2020-12 validator
with :data:`~oaiproxy.grammar.formats.FORMAT_CHECKER` and ``pattern`` read as ECMA-262 (through
the same parser the grammar uses), not as Python's ``re``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, Literal

import jsonschema

from oaiproxy.grammar import regex as rx
from oaiproxy.grammar.builder import GrammarBuilder
from oaiproxy.grammar.checks import check_schema
from oaiproxy.grammar.converter import SchemaConverter, types_of
from oaiproxy.grammar.errors import SchemaError, json_pointer
from oaiproxy.grammar.formats import FORMAT_CHECKER, FORMATS
from oaiproxy.grammar.keywords import ANNOTATIONS
from oaiproxy.grammar.limits import MAX_DEPTH

Objects = Literal["open", "declared", "all"]

_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_ONE = ("additionalProperties", "items", "additionalItems")


def enforced_schema(schema: Any, *, objects: Objects = "open", strict: bool = False) -> Any:
    """``schema`` as the grammar enforces it and the validator checks it (see the module docstring).

    Raises :class:`~oaiproxy.grammar.SchemaError` for a schema the converter would refuse
    anyway (invalid, an ``allOf`` that cannot be merged, ``strict`` with open objects). The
    result is shared between callers (memoised): do not modify it.
    """
    check_schema(schema)
    if isinstance(schema, bool):
        return schema
    try:
        text = json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise SchemaError(f"schema is not JSON: {e}") from None
    return _enforced_cached(text, "all" if strict else objects, strict)


@lru_cache(maxsize=1024)
def _enforced_cached(text: str, objects: Objects, strict: bool) -> Any:
    schema = json.loads(text)
    try:
        return _Enforcer(schema, objects, strict).walk(schema, "", 0)
    except RecursionError:
        raise SchemaError("schema is nested too deeply") from None


class _Enforcer:
    def __init__(self, root: Any, objects: Objects, strict: bool):
        self.objects = objects
        self.strict = strict
        # the converter's own allOf merge and $ref resolution, so both read a schema alike
        self.merger = SchemaConverter(GrammarBuilder(), root)

    def walk(self, node: Any, ptr: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise SchemaError(f"schema nesting exceeds the limit of {MAX_DEPTH}", pointer=ptr)
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            rest = {k: v for k, v in node.items() if k != "$ref" and k not in ANNOTATIONS
                    and k not in ("$defs", "definitions")}
            if rest:
                keep = {k: v for k, v in node.items() if k in ("$defs", "definitions")}
                merged = self.merger.merge_all_of({"allOf": [{"$ref": node["$ref"]}, rest], **keep}, ptr, depth)
                return self.walk(merged, ptr, depth + 1)
            return self._annotations_and_defs(node, {"$ref": node["$ref"]}, ptr, depth)
        if "allOf" in node:
            merged = self.merger.merge_all_of(node, ptr, depth)
            return self.walk(merged, ptr, depth + 1)
        for key in ("anyOf", "oneOf"):
            if key in node:
                branches = node[key]
                if not isinstance(branches, list) or not branches:
                    raise SchemaError(f"'{key}' must be a non-empty array", keyword=key, pointer=json_pointer(ptr, key))
                rest = {k: v for k, v in node.items()
                        if k != key and k not in ANNOTATIONS and k not in ("$defs", "definitions")}
                out = [self.walk({"allOf": [rest, b]} if rest else b, json_pointer(ptr, key, i), depth + 1)
                       for i, b in enumerate(branches)]
                return self._annotations_and_defs(node, {"anyOf": out}, ptr, depth)
        return self._plain(node, ptr, depth)

    def _annotations_and_defs(self, node: dict[str, Any], out: dict[str, Any], ptr: str, depth: int) -> dict[str, Any]:
        for k, v in node.items():
            if k in ANNOTATIONS and k not in ("$schema", "$id", "strict"):
                out.setdefault(k, v)
        for key in ("$defs", "definitions"):
            if isinstance(node.get(key), dict):
                out[key] = {name: self.walk(sub, json_pointer(ptr, key, name), depth + 1)
                            for name, sub in node[key].items()}
        return out

    def _plain(self, node: dict[str, Any], ptr: str, depth: int) -> Any:
        out = {k: v for k, v in node.items() if k not in ("$schema", "$id", "uniqueItems", "nullable", "strict")}
        # OpenAPI's nullable, the converter's reading: null joins the listed types
        if node.get("nullable") is True and isinstance(node.get("type"), (str, list)):
            listed = [node["type"]] if isinstance(node["type"], str) else list(node["type"])
            out["type"] = listed if "null" in listed else listed + ["null"]
        # draft 4: exclusiveMinimum/-Maximum are flags on minimum/maximum
        for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(node.get(flag), bool):
                del out[flag]
                if node[flag] and bound in node and not isinstance(node[bound], bool):
                    out[flag] = out.pop(bound)
        # draft 4-7: items as an array is 2020-12's prefixItems, additionalItems its items
        if isinstance(node.get("items"), list):
            out["prefixItems"] = node["items"]
            out.pop("items")
            if "additionalItems" in node:
                out["items"] = out.pop("additionalItems")
        else:
            out.pop("additionalItems", None)
        fmt = node.get("format")
        if isinstance(fmt, str) and (fmt not in FORMATS or "pattern" in node):
            del out["format"]
        for key in _SUBSCHEMA_MAPS:
            if isinstance(out.get(key), dict):
                out[key] = {name: self.walk(sub, json_pointer(ptr, key, name), depth + 1)
                            for name, sub in out[key].items()}
        for key in _SUBSCHEMA_ONE:
            if isinstance(out.get(key), dict):
                out[key] = self.walk(out[key], json_pointer(ptr, key), depth + 1)
        if isinstance(out.get("prefixItems"), list):
            out["prefixItems"] = [self.walk(sub, json_pointer(ptr, "prefixItems", i), depth + 1)
                                  for i, sub in enumerate(out["prefixItems"])]
        types = types_of(node, ptr)
        if types is not None and "object" in types and "enum" not in node and "const" not in node:
            extra = node.get("additionalProperties")
            if self.strict and "additionalProperties" in node and extra is not False:
                raise SchemaError("with strict, 'additionalProperties' must be false (no keys beyond "
                                  "'properties')", keyword="additionalProperties",
                                  pointer=json_pointer(ptr, "additionalProperties"))
            if "additionalProperties" not in node and (
                    self.objects == "all" or (self.objects == "declared" and "properties" in node)):
                out["additionalProperties"] = False
        return out


# --- the check -------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _python_pattern(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(rx.to_python(pattern))
    except (rx.RegexError, re.error):
        return None


def _ecma_pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "string") or not isinstance(pattern, str):
        return
    compiled = _python_pattern(pattern)
    if compiled is None:
        yield jsonschema.ValidationError(f"pattern {pattern!r} is not a regular expression the proxy supports")
    elif not compiled.search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


ProxyValidator: Any = jsonschema.validators.extend(  # type: ignore[no-untyped-call]  # jsonschema ships no types
    jsonschema.Draft202012Validator, {"pattern": _ecma_pattern})
"""2020-12 with ``pattern`` read as ECMA-262, the way the grammar reads it."""


def validator(enforced: Any) -> Any:
    """The check for an :func:`enforced_schema` result (``is_valid``, ``iter_errors``)."""
    return ProxyValidator(enforced, format_checker=FORMAT_CHECKER)


__all__ = ["Objects", "ProxyValidator", "enforced_schema", "validator"]
