"""JSON Schema -> GBNF: a grammar that admits exactly the JSON a schema allows.

The grammar is the whole promise of the proxy: a tool call sampled under it
names a real tool and its arguments validate. So every keyword is either
enforced exactly, relaxed in a documented way (``uniqueItems``, ``oneOf``), or
refused with a :class:`SchemaError` naming the keyword and the JSON pointer —
never silently dropped. Values are written in one canonical shape (declared
properties in order, a single optional space after ``,`` and ``:``) that covers
``json.dumps`` output with either separator style and either ``ensure_ascii``
setting; the shape keeps sampling cheap and stops small models from wandering
into endless whitespace.

One :class:`SchemaConverter` per conversion holds that conversion's state (the root
for ``$ref``, references in progress); the rules go to a :class:`GrammarBuilder`, which
may collect several schemas into one grammar. See docs/json-schema.md for the
supported keywords, relaxations and limits.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, overload

from oaiproxy.grammar import charsets as cs
from oaiproxy.grammar import regex as rx
from oaiproxy.grammar.all_of import merge_schemas
from oaiproxy.grammar.builder import GrammarBuilder, is_symbol, quant, rule_name
from oaiproxy.grammar.checks import check_schema, check_shape
from oaiproxy.grammar.errors import SchemaError, json_pointer
from oaiproxy.grammar.formats import FORMATS, format_rules
from oaiproxy.grammar.keywords import (
    ANNOTATIONS,
    ARRAY_KEYS,
    NUMBER_KEYS,
    OBJECT_KEYS,
    STRING_KEYS,
    TYPES,
    UNSUPPORTED,
    json_equal,
)
from oaiproxy.grammar.limits import DIRECT_REPEAT, MAX_BOUND_DIGITS, MAX_COUNT, MAX_DEPTH, MAX_ENUM
from oaiproxy.grammar.ranges import decimal_range, integer_range
from oaiproxy.grammar.regex_rules import RegexRules, intersect_length

__all__ = ["GrammarBuilder", "SchemaConverter", "SchemaError", "check_schema", "schema_to_gbnf"]


class SchemaConverter:
    """One schema's conversion into rules of a :class:`GrammarBuilder`.

    ``root`` is the schema ``$ref`` pointers resolve against (already an
    :func:`~oaiproxy.grammar.enforced_schema`). ``cycles_empty`` is the probe mode that
    asks whether a recursive schema has a finite value: every recursive reference
    admits nothing.
    """

    def __init__(self, rules: GrammarBuilder, root: Any, *, cycles_empty: bool = False):
        self.rules = rules
        self.root = root
        self.cycles_empty = cycles_empty
        self.refs: dict[str, str | None] = {}  # None: the target admits no value
        self.ref_used: set[str] = set()
        self.in_progress: dict[str, tuple[str, int]] = {}
        self.containers = 0  # objects/arrays entered: a cycle through none of them is left recursion

    def convert(self, name: str) -> str:
        """The rule (or symbol) for one value of the root schema, its rules named under ``name``."""
        try:
            expr = self._visit(self.root, "", rule_name(name), 0)
        except RecursionError:
            raise SchemaError("schema is nested too deeply") from None
        if expr is None:
            raise SchemaError("schema admits no value", pointer="")
        if is_symbol(expr) and re.fullmatch(r"[A-Za-z0-9-]+", expr):
            return expr
        return self.rules.add_rule(name, expr)

    # The visitor returns a GBNF expression (usually a rule name) or None when the
    # (sub)schema admits no value at all.

    def _visit(self, schema: Any, ptr: str, name: str, depth: int) -> str | None:
        if depth > MAX_DEPTH:
            raise SchemaError(f"schema nesting exceeds the limit of {MAX_DEPTH}", pointer=ptr)
        if schema is True:
            return self.rules.primitive("value")
        if schema is False:
            return None
        if not isinstance(schema, dict):
            raise SchemaError("a schema must be an object or a boolean", pointer=ptr)
        for key in schema:
            if key in UNSUPPORTED:
                raise SchemaError(f"'{key}' cannot be enforced by a grammar", keyword=key,
                                  pointer=json_pointer(ptr, key))
        if "$ref" in schema:
            return self._visit_ref(schema, ptr, name, depth)
        if "allOf" in schema:
            merged = self.merge_all_of(schema, ptr, depth)
            return self._visit(merged, ptr, name, depth + 1)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self._visit_any_of(schema, key, ptr, name, depth)
        return self._visit_plain(schema, ptr, name, depth)

    def _resolve(self, ref: Any, ptr: str) -> tuple[Any, str]:
        where = json_pointer(ptr, "$ref")
        if not isinstance(ref, str):
            raise SchemaError("'$ref' must be a string", keyword="$ref", pointer=where)
        if not ref.startswith("#"):
            raise SchemaError(f"only local references ('#/...') are supported, not {ref!r}", keyword="$ref",
                              pointer=where)
        fragment = ref[1:]
        if fragment and not fragment.startswith("/"):
            raise SchemaError(f"anchor references are not supported: {ref!r}", keyword="$ref", pointer=where)
        from urllib.parse import unquote

        node = self.root
        for part in fragment.split("/")[1:] if fragment else []:
            part = unquote(part).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise SchemaError(f"unresolvable reference {ref!r}", keyword="$ref", pointer=where)
        if not isinstance(node, (dict, bool)):
            raise SchemaError(f"reference {ref!r} does not point to a schema", keyword="$ref", pointer=where)
        return node, fragment

    def _visit_ref(self, schema: dict[str, Any], ptr: str, name: str, depth: int) -> str | None:
        target, target_ptr = self._resolve(schema["$ref"], ptr)
        rest = {k: v for k, v in schema.items() if k != "$ref" and k not in ANNOTATIONS
                and k not in ("$defs", "definitions")}
        if rest:  # 2019-09+: $ref applies alongside its siblings
            merged = self.merge_all_of({"allOf": [{"$ref": schema["$ref"]}, rest]}, ptr, depth)
            return self._visit(merged, ptr, name, depth + 1)
        if target_ptr in self.refs:
            return self.refs[target_ptr]
        if target_ptr in self.in_progress:
            placeholder, containers = self.in_progress[target_ptr]
            if containers == self.containers:
                raise SchemaError("reference cycle outside any object or array (the schema refers to itself "
                                  "without consuming input)", keyword="$ref", pointer=json_pointer(ptr, "$ref"))
            if self.cycles_empty:
                return None
            self.ref_used.add(placeholder)
            return placeholder
        ref_name = rule_name(target_ptr.rsplit("/", 1)[-1]) if target_ptr else "root-ref"
        placeholder = self.rules.reserve(ref_name)
        self.in_progress[target_ptr] = (placeholder, self.containers)
        try:
            expr = self._visit(target, target_ptr, ref_name, depth + 1)
        finally:
            del self.in_progress[target_ptr]
        if placeholder in self.ref_used:
            if expr is None or not self._has_finite_value(target, target_ptr, ref_name, depth):
                raise SchemaError("recursive schema admits no finite value (the recursion is never optional)",
                                  keyword="$ref", pointer=json_pointer(ptr, "$ref"))
            self.rules.define(placeholder, expr)
            result: str | None = placeholder
        else:
            self.rules.release(placeholder)
            result = expr
        self.refs[target_ptr] = result
        return result

    def _has_finite_value(self, target: Any, target_ptr: str, name: str, depth: int) -> bool:
        """Convert again with every recursive reference taken as empty: anything left is finite."""
        probe = SchemaConverter(GrammarBuilder(additional_properties=self.rules.additional_properties_default),
                                self.root, cycles_empty=True)
        probe.in_progress = {target_ptr: ("", -1)}
        return probe._visit(target, target_ptr, name, depth + 1) is not None

    # --- allOf ----------------------------------------------------------------------------

    def _deref(self, schema: Any, ptr: str, depth: int) -> tuple[Any, str]:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema:
            seen += 1
            if seen > MAX_DEPTH:
                raise SchemaError("reference chain too long or circular", keyword="$ref", pointer=ptr)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            target, target_ptr = self._resolve(schema["$ref"], ptr)
            if any(k not in ANNOTATIONS and k not in ("$defs", "definitions") for k in rest):
                return {"allOf": [target, rest]}, ptr
            schema, ptr = target, target_ptr
        return schema, ptr

    def merge_all_of(self, schema: dict[str, Any], ptr: str, depth: int) -> Any:
        """Merge allOf parts into one schema (the intersection), or False when unsatisfiable."""
        if depth > MAX_DEPTH:
            raise SchemaError(f"schema nesting exceeds the limit of {MAX_DEPTH}", pointer=ptr)
        parts = schema["allOf"]
        where = json_pointer(ptr, "allOf")
        if not isinstance(parts, list) or not parts:
            raise SchemaError("'allOf' must be a non-empty array", keyword="allOf", pointer=where)
        base = {k: v for k, v in schema.items() if k != "allOf"}
        result: Any = base
        for i, part in enumerate(parts):
            part, part_ptr = self._deref(part, json_pointer(where, i), depth)
            if isinstance(part, dict) and "allOf" in part:
                part = self.merge_all_of(part, part_ptr, depth + 1)
            result = merge_schemas(result, part, where)
            if result is False:
                return False
        return result

    # --- anyOf / oneOf --------------------------------------------------------------------

    def _visit_any_of(self, schema: dict[str, Any], key: str, ptr: str, name: str, depth: int) -> str | None:
        branches = schema[key]
        where = json_pointer(ptr, key)
        if not isinstance(branches, list) or not branches:
            raise SchemaError(f"'{key}' must be a non-empty array", keyword=key, pointer=where)
        rest = {k: v for k, v in schema.items()
                if k != key and k not in ANNOTATIONS and k not in ("$defs", "definitions")}
        alts: list[str] = []
        for i, branch in enumerate(branches):
            bptr = json_pointer(where, i)
            # siblings apply to every branch: {"type": "object", "anyOf": [...]} is anyOf of intersections
            sub = {"allOf": [rest, branch]} if rest else branch
            expr = self._visit(sub, bptr, f"{name}-{i}", depth + 1)
            if expr is not None and expr not in alts:
                alts.append(expr)
        if not alts:
            return None
        if len(alts) == 1:
            return alts[0]
        return self.rules.add_rule(name, " | ".join(alts))

    # --- plain schemas -------------------------------------------------------------------

    def _visit_plain(self, schema: dict[str, Any], ptr: str, name: str, depth: int) -> str | None:
        types = types_of(schema, ptr)
        if "enum" in schema or "const" in schema:
            return self._visit_enum(schema, types, ptr, name)
        if types is None:
            return self.rules.primitive("value")
        alts: list[str] = []
        single = len(types) == 1
        for t in types:
            sub_name = name if single else f"{name}-{t}"
            expr = self._visit_type(t, schema, ptr, sub_name, depth)
            if expr is not None and expr not in alts:
                alts.append(expr)
        if not alts:
            return None
        if len(alts) == 1:
            return alts[0]
        return self.rules.add_rule(name, " | ".join(alts))

    def _visit_type(self, t: str, schema: dict[str, Any], ptr: str, name: str, depth: int) -> str | None:
        if t == "null":
            return self.rules.primitive("null")
        if t == "boolean":
            return self.rules.primitive("boolean")
        if t == "string":
            return self._visit_string(schema, ptr, name)
        if t == "integer":
            return self._visit_integer(schema, ptr, name)
        if t == "number":
            return self._visit_number(schema, ptr, name)
        if t == "object":
            return self._visit_object(schema, ptr, name, depth)
        return self._visit_array(schema, ptr, name, depth)

    # --- enum / const ----------------------------------------------------------------------

    def _visit_enum(self, schema: dict[str, Any], types: list[str] | None, ptr: str, name: str) -> str | None:
        values: list[Any]
        if "const" in schema:
            values = [schema["const"]]
            kw = "const"
        else:
            values = schema["enum"]
            kw = "enum"
            if not isinstance(values, list):
                raise SchemaError("'enum' must be an array", keyword="enum", pointer=json_pointer(ptr, "enum"))
            if len(values) > MAX_ENUM:
                raise SchemaError(f"'enum' has more than {MAX_ENUM} values", keyword="enum",
                                  pointer=json_pointer(ptr, "enum"))
        if "const" in schema and "enum" in schema:
            values = [v for v in values if any(json_equal(v, e) for e in schema["enum"])]
        rest = {k: v for k, v in schema.items() if k not in ("enum", "const") and k not in ANNOTATIONS}
        kept: list[Any] = []
        is_valid = _sibling_validator(rest, self.root) if rest else None
        for v in values:
            if is_valid is not None and not is_valid(v):
                continue
            if not any(json_equal(v, k) for k in kept):
                kept.append(v)
        if not kept:
            return None
        strings = [v for v in kept if isinstance(v, str)]
        others = [v for v in kept if not isinstance(v, str)]
        alts = []
        if strings:
            alts.append(self._string_choice(strings, ptr, kw))
        for v in others:
            alts.append(self._const_value(v, json_pointer(ptr, kw)))
        body = " | ".join(alts)
        return self.rules.add_rule(name, body)

    def _string_choice(self, strings: list[str], ptr: str, kw: str) -> str:
        """JSON string tokens for a set of values, factored as a trie so sampling stays cheap."""
        for s in strings:
            if any(0xD800 <= ord(c) <= 0xDFFF for c in s):
                raise SchemaError("string contains a lone surrogate", keyword=kw, pointer=json_pointer(ptr, kw))
        if len(strings) <= 4:
            return " | ".join(cs.json_string_literal(s) for s in strings)
        return '"\\"" ' + _trie(sorted(set(strings)), 0) + ' "\\""'

    def _const_value(self, value: Any, ptr: str, depth: int = 0) -> str:
        if depth > MAX_DEPTH:
            raise SchemaError("constant value nested too deeply", pointer=ptr)
        if value is None:
            return '"null"'
        if value is True:
            return '"true"'
        if value is False:
            return '"false"'
        if isinstance(value, float) and not math.isfinite(value):
            raise SchemaError("constant number is not finite", pointer=ptr)
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e16):
            # JSON Schema compares numbers by value: json.dumps(1.0) == "1.0" equals 1
            return f'"{int(value)}" ".0"?'
        if isinstance(value, float):
            return f'"{json.dumps(value)}"'
        if isinstance(value, str):
            return cs.json_string_literal(value)
        ws = self.rules.ws
        if isinstance(value, list):
            if not value:
                return '"[]"'
            items = [self._const_value(v, ptr, depth + 1) for v in value]
            return '"[" ' + f' "," {ws} '.join(items) + ' "]"'
        if isinstance(value, dict):
            if not value:
                return '"{}"'
            kvs = [f"{cs.json_string_literal(str(k))} \":\" {ws} {self._const_value(v, ptr, depth + 1)}"
                   for k, v in value.items()]
            return '"{" ' + f' "," {ws} '.join(kvs) + ' "}"'
        raise SchemaError(f"unsupported constant of type {type(value).__name__}", pointer=ptr)

    # --- strings -------------------------------------------------------------------------

    def _visit_string(self, schema: dict[str, Any], ptr: str, name: str) -> str | None:
        lo = _count(schema, "minLength", ptr, 0)
        hi = _count(schema, "maxLength", ptr, None)
        if hi is not None and hi < lo:
            return None
        pattern = schema.get("pattern")
        fmt = schema.get("format")
        if fmt is not None and not isinstance(fmt, str):
            raise SchemaError("'format' must be a string", keyword="format", pointer=json_pointer(ptr, "format"))
        if pattern is not None:  # a format beside a pattern is an annotation (enforced_schema drops it)
            return self._visit_pattern(pattern, lo, hi, ptr, name)
        if fmt in FORMATS:
            return self._visit_format(fmt, lo, hi, ptr, name)
        if lo == 0 and hi is None:
            return self.rules.primitive("string")
        char = self.rules.primitive("char")
        return self.rules.add_rule(name, f'"\\"" {self._repeat(char, lo, hi, name)} "\\""')

    def _visit_format(self, fmt: str, lo: int, hi: int | None, ptr: str, name: str) -> str | None:
        """A format within the length bounds: the format's grammar built for ``maxLength``."""
        built = format_rules(fmt, hi)
        if built is None:
            return None
        if lo > FORMATS[fmt].shortest:
            longest = FORMATS[fmt].longest
            if longest is not None and lo > longest:
                return None
            raise SchemaError(f"format '{fmt}' with minLength {lo} cannot be enforced exactly (its grammar "
                              f"admits values of {FORMATS[fmt].shortest} characters)", keyword="minLength",
                              pointer=json_pointer(ptr, "minLength"))
        rules, entry = built
        for fixed_name, body in rules.items():
            self.rules.add_named_rule(fixed_name, body)
        return self.rules.add_rule(name, f'"\\"" {entry} "\\""')

    def _visit_pattern(self, pattern: Any, lo: int, hi: int | None, ptr: str, name: str) -> str | None:
        where = json_pointer(ptr, "pattern")
        if not isinstance(pattern, str):
            raise SchemaError("'pattern' must be a string", keyword="pattern", pointer=where)
        try:
            ast = rx.parse(pattern)
            branches = rx.split_anchors(ast)
        except rx.RegexError as e:
            raise SchemaError(f"pattern {pattern!r}: {e}", keyword="pattern", pointer=where) from None
        alts = []
        for start, body, end in branches:
            if lo > 0 or hi is not None:
                tightened = intersect_length(body, start, end, lo, hi)
                if tightened is None:
                    raise SchemaError("cannot combine this pattern with minLength/maxLength exactly",
                                      keyword="maxLength" if hi is not None else "minLength", pointer=ptr)
                if tightened is False:
                    continue
                body = tightened
            compiled = RegexRules(self.rules, name).compile(body)
            if compiled is None:
                continue
            parts = []
            if not start:
                parts.append(self.rules.primitive("char") + "*")
            if compiled:
                parts.append(compiled)
            if not end:
                parts.append(self.rules.primitive("char") + "*")
            alts.append(" ".join(parts) if parts else '""')
        if not alts:
            return None
        inner = alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")"
        return self.rules.add_rule(name, f'"\\"" {inner} "\\""')

    def _repeat(self, symbol: str, lo: int, hi: int | None, name: str) -> str:
        """``symbol`` repeated lo..hi times, in a form llama.cpp expands cheaply."""
        if not is_symbol(symbol) or symbol.startswith("("):
            symbol = self.rules.add_rule(name + "-item", symbol)
        if hi is not None and hi > DIRECT_REPEAT or lo > DIRECT_REPEAT:
            chunk = self.rules.add_rule(f"{name}-chunk", f"{symbol}{{{DIRECT_REPEAT}}}")
            parts = []
            q, r = divmod(lo, DIRECT_REPEAT)
            if q:
                parts.append(quant(chunk, q, q))
            if r:
                parts.append(quant(symbol, r, r))
            if hi is None:
                parts.append(f"{symbol}*")
            else:
                extra = hi - lo
                if extra <= DIRECT_REPEAT:
                    parts.append(quant(symbol, 0, extra))
                else:
                    q2, r2 = divmod(extra, DIRECT_REPEAT)
                    parts.append(f"({quant(chunk, 0, q2 - 1)} {quant(symbol, 0, DIRECT_REPEAT - 1)} | "
                                 f"{quant(chunk, q2, q2)} {quant(symbol, 0, r2)})")
            return " ".join(p for p in parts if p)
        return quant(symbol, lo, hi)

    # --- numbers -------------------------------------------------------------------------

    def _bounds(self, schema: dict[str, Any], ptr: str) -> tuple[Decimal | None, bool, Decimal | None, bool]:
        def num(key: str) -> Decimal | None:
            v = schema.get(key)
            if v is None or isinstance(v, bool):
                return None
            if not isinstance(v, (int, float)):
                raise SchemaError(f"'{key}' must be a number", keyword=key, pointer=json_pointer(ptr, key))
            try:
                d = Decimal(str(v)) if isinstance(v, float) else Decimal(v)
            except InvalidOperation:
                raise SchemaError(f"'{key}' is not a finite number", keyword=key, pointer=json_pointer(ptr,
                                  key)) from None
            if not d.is_finite():
                raise SchemaError(f"'{key}' is not a finite number", keyword=key, pointer=json_pointer(ptr, key))
            exponent = d.as_tuple().exponent
            assert isinstance(exponent, int)  # finite: not 'n', 'N' or 'F'
            if len(d.as_tuple().digits) + max(0, exponent) > MAX_BOUND_DIGITS or exponent < -MAX_BOUND_DIGITS:
                raise SchemaError(f"'{key}' has more than {MAX_BOUND_DIGITS} digits", keyword=key,
                                  pointer=json_pointer(ptr, key))
            return d.normalize() if d != 0 else Decimal(0)

        lo, hi = num("minimum"), num("maximum")
        lo_x = hi_x = False
        emin, emax = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if isinstance(emin, bool):  # draft 4: a flag on minimum
            lo_x = emin and lo is not None
        elif emin is not None:
            e = num("exclusiveMinimum")
            if e is not None and (lo is None or e >= lo):
                lo, lo_x = e, True
        if isinstance(emax, bool):
            hi_x = emax and hi is not None
        elif emax is not None:
            e = num("exclusiveMaximum")
            if e is not None and (hi is None or e <= hi):
                hi, hi_x = e, True
        return lo, lo_x, hi, hi_x

    def _visit_integer(self, schema: dict[str, Any], ptr: str, name: str) -> str | None:
        lo, lo_x, hi, hi_x = self._bounds(schema, ptr)
        if lo is None and hi is None:
            return self.rules.primitive("integer")
        ilo = None if lo is None else (math.floor(lo) + 1 if lo_x else math.ceil(lo))
        ihi = None if hi is None else (math.ceil(hi) - 1 if hi_x else math.floor(hi))
        alts = integer_range(ilo, ihi)
        if not alts:
            return None
        return self.rules.add_rule(name, " | ".join(alts))

    def _visit_number(self, schema: dict[str, Any], ptr: str, name: str) -> str | None:
        lo, lo_x, hi, hi_x = self._bounds(schema, ptr)
        if lo is None and hi is None:
            return self.rules.primitive("number")
        # Clients (and the validator) read numbers as doubles: "0.10000000000000000001" is more than
        # 0.1 as a decimal but equals it as a double. An exclusive bound is therefore written as the
        # inclusive bound of the next double beyond it; an inclusive bound needs nothing (rounding is
        # monotonic). Zero needs nothing either: the grammar's digits cannot come within a double of it.
        if lo is not None and lo_x and lo != 0:
            lo, lo_x = Decimal(repr(math.nextafter(float(lo), math.inf))), False
        if hi is not None and hi_x and hi != 0:
            hi, hi_x = Decimal(repr(math.nextafter(float(hi), -math.inf))), False
        alts = decimal_range(lo, lo_x, hi, hi_x)
        if not alts:
            return None
        return self.rules.add_rule(name, " | ".join(alts))

    # --- objects -------------------------------------------------------------------------

    def _visit_object(self, schema: dict[str, Any], ptr: str, name: str, depth: int) -> str | None:
        self.containers += 1
        try:
            return self._visit_object_inner(schema, ptr, name, depth)
        finally:
            self.containers -= 1

    def _visit_object_inner(self, schema: dict[str, Any], ptr: str, name: str, depth: int) -> str | None:
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise SchemaError("'properties' must be an object", keyword="properties", pointer=json_pointer(ptr,
                              "properties"))
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise SchemaError("'required' must be an array of strings", keyword="required",
                              pointer=json_pointer(ptr, "required"))
        extra = schema.get("additionalProperties", self.rules.additional_properties_default)
        if not isinstance(extra, (bool, dict)):
            raise SchemaError("'additionalProperties' must be a schema", keyword="additionalProperties",
                              pointer=json_pointer(ptr, "additionalProperties"))
        prefix = "" if name == "root" else name + "-"
        ws = self.rules.ws
        req_kvs: list[str] = []
        opt_kvs: list[str] = []
        ordered = [k for k in props if k in required] + [k for k in dict.fromkeys(required) if k not in props]
        for key in ordered + [k for k in props if k not in required]:
            is_required = key in required
            if key in props:
                sub, sub_ptr = props[key], json_pointer(ptr, "properties", key)
            else:
                sub, sub_ptr = extra, json_pointer(ptr, "additionalProperties")
            value = self._visit(sub, sub_ptr, prefix + rule_name(key), depth + 1)
            if value is None:
                if is_required:
                    return None
                continue
            if any(0xD800 <= ord(c) <= 0xDFFF for c in key):
                raise SchemaError("property name contains a lone surrogate", keyword="properties",
                                  pointer=sub_ptr)
            kv = self.rules.add_rule(f"{prefix}{rule_name(key)}-kv", f'{cs.json_string_literal(key)} ":" {ws} {value}')
            (req_kvs if is_required else opt_kvs).append(kv)
        extra_kv = None
        if extra is not False:
            extra_value = self._visit(extra, json_pointer(ptr, "additionalProperties"), f"{prefix}additional",
                                      depth + 1)
            if extra_value is not None:
                key_rule = self._key_not_in(list(props) + list(required), f"{prefix}additional-key")
                extra_kv = self.rules.add_rule(f"{prefix}additional-kv", f'{key_rule} ":" {ws} {extra_value}')
        # declared properties first (required, then optional, each optional may be absent), then extras
        tail_parts = [f'("," {ws} {kv})?' for kv in opt_kvs]
        if extra_kv:
            tail_parts.append(f'("," {ws} {extra_kv})*')
        if req_kvs:
            body = '"{" ' + f' "," {ws} '.join(req_kvs)
            if tail_parts:
                body += " " + " ".join(tail_parts)
            return self.rules.add_rule(name, body + ' "}"')
        if not tail_parts:
            return self.rules.add_rule(name, '"{}"')
        # all optional: whichever comes first has no comma; chain rules keep this linear
        items = opt_kvs + ([extra_kv] if extra_kv else [])
        rest: str | None = None  # rule for "the items after index i, each with a leading comma"
        firsts: list[str] = []
        for i in range(len(items) - 1, -1, -1):
            is_extra = extra_kv is not None and i == len(items) - 1
            if is_extra:
                firsts.append(f'{items[i]} ("," {ws} {items[i]})*')
                rest = self.rules.add_rule(f"{name}-rest-{i}", f'("," {ws} {items[i]})*')
                continue
            firsts.append(f"{items[i]} {rest}" if rest else items[i])
            seq = f'("," {ws} {items[i]})?' + (f" {rest}" if rest else "")
            rest = self.rules.add_rule(f"{name}-rest-{i}", seq)
        firsts.reverse()
        return self.rules.add_rule(name, '"{" ( ' + " | ".join(firsts) + ' )? "}"')

    def _key_not_in(self, names: list[str], rule: str) -> str:
        """A JSON object key that is none of ``names`` (decoded comparison, any spelling)."""
        names = sorted(set(names))
        char = self.rules.primitive("char")
        if not names:
            return self.rules.primitive("string")

        def node(prefix_names: list[str], i: int) -> str:
            ends_here = any(len(n) == i for n in prefix_names)
            children: dict[str, list[str]] = {}
            for n in prefix_names:
                if len(n) > i:
                    children.setdefault(n[i], []).append(n)
            alts = []
            for c in sorted(children):
                sub = node(children[c], i + 1)
                alts.append(f"{cs.json_char(cs.single(ord(c)))} {sub}".strip())
            others = cs.complement(cs.normalize([(ord(c), ord(c)) for c in children]))
            other_char = self.rules.json_char(others, rule)
            if other_char:
                alts.append(f"{other_char} {char}*")
            body = " | ".join(alts)
            if not ends_here:
                return f"({body})?" if alts else ""
            return f"({body})" if alts else ""

        return self.rules.add_rule(rule, '"\\"" ' + node(names, 0) + ' "\\""')

    # --- arrays --------------------------------------------------------------------------

    def _visit_array(self, schema: dict[str, Any], ptr: str, name: str, depth: int) -> str | None:
        self.containers += 1
        try:
            return self._visit_array_inner(schema, ptr, name, depth)
        finally:
            self.containers -= 1

    def _visit_array_inner(self, schema: dict[str, Any], ptr: str, name: str, depth: int) -> str | None:
        lo = _count(schema, "minItems", ptr, 0)
        hi = _count(schema, "maxItems", ptr, None)
        items = schema.get("items")
        prefix_schemas = schema.get("prefixItems")
        rest: Any
        prefix_key = "prefixItems"
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix_schemas, prefix_key = items, "items"
            rest = schema.get("additionalItems", True)
            rest_key = "additionalItems"
        else:
            rest = True if items is None else items
            rest_key = "items"
        if prefix_schemas is None:
            prefix_schemas = []
        if not isinstance(prefix_schemas, list):
            raise SchemaError(f"'{prefix_key}' must be an array", keyword=prefix_key, pointer=json_pointer(ptr,
                              prefix_key))
        if not isinstance(rest, (bool, dict)):
            raise SchemaError(f"'{rest_key}' must be a schema", keyword=rest_key, pointer=json_pointer(ptr, rest_key))
        item_base = name if name != "root" else "root"
        prefix_exprs: list[str] = []
        for i, sub in enumerate(prefix_schemas):
            if hi is not None and i >= hi:
                break
            expr = self._visit(sub, json_pointer(ptr, prefix_key, i), f"{item_base}-{i}", depth + 1)
            if expr is None:
                hi = i if hi is None else min(hi, i)
                break
            prefix_exprs.append(expr)
        k = len(prefix_exprs)
        rest_expr = None
        if hi is None or hi > k:
            if len(prefix_schemas) > k:
                rest_expr = None  # an item that admits no value ends the array
                hi = k if hi is None else min(hi, k)
            else:
                rest_expr = self._visit(rest, json_pointer(ptr, rest_key), f"{item_base}-item", depth + 1)
                if rest_expr is None:
                    hi = k if hi is None else min(hi, k)
        if hi is not None and hi < lo:
            return None
        ws = self.rules.ws
        sep = f'"," {ws}'

        def tail(i: int) -> str:
            """Elements from index i on (i >= 1), each with a leading separator."""
            if i < k:
                after = tail(i + 1)
                inner = f"{sep} {prefix_exprs[i]}" + (f" {after}" if after else "")
                return inner if i < lo else f"({inner})?"
            if rest_expr is None or (hi is not None and hi <= i):
                return ""
            rlo = max(lo - i, 0)
            rhi = None if hi is None else hi - i
            group = self.rules.add_rule(f"{name}-next", f"{sep} {rest_expr}")
            return self._repeat(group, rlo, rhi, name)

        if k > 0:
            first = prefix_exprs[0]
        elif rest_expr is not None and (hi is None or hi > 0):
            first = rest_expr
        else:
            first = None
        if first is None:
            return self.rules.add_rule(name, '"[]"')
        after = tail(1)
        elements = f"{first} {after}".strip()
        body = f'"[" {elements} "]"' if lo >= 1 else f'"[" ({elements})? "]"'
        return self.rules.add_rule(name, body)

def _trie(strings: list[str], i: int) -> str:
    """Alternation of the JSON spellings of ``strings[..][i:]``, sharing common prefixes."""
    groups: dict[str, list[str]] = {}
    ends = False
    for s in strings:
        if len(s) == i:
            ends = True
        else:
            groups.setdefault(s[i], []).append(s)
    alts = []
    for members in groups.values():
        # walk down while there is a single branch, to emit runs as one literal
        j = i + 1
        while all(len(m) > j for m in members) and len({m[j] for m in members}) == 1:
            j += 1
        head = " ".join(cs.json_text_pieces(members[0][i:j]))
        if len(members) == 1 and len(members[0]) == j:
            alts.append(head)
        else:
            alts.append(f"{head} {_trie(members, j)}")
    body = " | ".join(alts)
    if ends:
        return f"({body})?" if body else ""
    return f"({body})" if len(alts) > 1 else body


def types_of(schema: dict[str, Any], ptr: str) -> list[str] | None:
    """The JSON types a schema admits, or None for any value (no type keyword, no type-specific keywords)."""
    t = schema.get("type")
    where = json_pointer(ptr, "type")
    if t is None:
        inferred = []
        if any(k in schema for k in OBJECT_KEYS):
            inferred.append("object")
        if any(k in schema for k in ARRAY_KEYS - {"uniqueItems"}):
            inferred.append("array")
        if any(k in schema for k in STRING_KEYS - {"format"}) or (
                "format" in schema and schema["format"] in FORMATS):
            inferred.append("string")
        if any(k in schema for k in NUMBER_KEYS):
            inferred.append("number")
        if not inferred:
            types = None
        else:
            types = inferred
    elif isinstance(t, str):
        types = [t]
    elif isinstance(t, list) and t and all(isinstance(x, str) for x in t):
        types = list(dict.fromkeys(t))
    else:
        raise SchemaError("'type' must be a type name or a non-empty array of them", keyword="type", pointer=where)
    if types is not None:
        for x in types:
            if x not in TYPES:
                raise SchemaError(f"unknown type {x!r}", keyword="type", pointer=where)
        if "integer" in types and "number" in types:
            types.remove("integer")
        if schema.get("nullable") is True and "null" not in types:
            types.append("null")
    return types


@overload
def _count(schema: dict[str, Any], key: str, ptr: str, default: int) -> int: ...
@overload
def _count(schema: dict[str, Any], key: str, ptr: str, default: None) -> int | None: ...
def _count(schema: dict[str, Any], key: str, ptr: str, default: int | None) -> int | None:
    v = schema.get(key, default)
    if v is default:
        return v
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise SchemaError(f"'{key}' must be a non-negative integer", keyword=key, pointer=json_pointer(ptr, key))
    if v > MAX_COUNT:
        raise SchemaError(f"'{key}' exceeds the limit of {MAX_COUNT}", keyword=key, pointer=json_pointer(ptr, key))
    return v


def _sibling_validator(schema: dict[str, Any], root: Any) -> Callable[[Any], bool]:
    """A predicate: does an enum/const value satisfy the sibling keywords? (refs resolved against the root)

    Keeping only the values that do makes ``{"type": "string", "enum": ["a", 1]}`` exact. The
    check is the proxy's own (formats, ECMA patterns), so the kept values pass the final check.
    """
    from oaiproxy.grammar.enforced import validator as proxy_validator

    probe = dict(schema)
    if isinstance(root, dict):
        for key in ("$defs", "definitions"):
            if key in root and key not in probe:
                probe[key] = root[key]
    validator = proxy_validator(probe)

    def is_valid(value: Any) -> bool:
        try:
            return bool(validator.is_valid(value))
        except Exception:  # e.g. an unresolvable $ref inside a sibling: reported elsewhere, keep the value
            return True

    return is_valid


# --- entry point ----------------------------------------------------------------------------

def schema_to_gbnf(schema: dict[str, Any] | bool) -> str:
    """The whole grammar (root rule ``root``) admitting exactly the JSON values of ``schema``.

    Memoised per schema (keyed on its JSON text), so a tool list converts once per process.
    """
    check_shape(schema)
    try:
        key = json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise SchemaError(f"schema is not JSON: {e}") from None
    return _schema_to_gbnf_cached(key)


@lru_cache(maxsize=1024)
def _schema_to_gbnf_cached(text: str) -> str:
    schema = json.loads(text)
    builder = GrammarBuilder()
    root = builder.add_schema(schema, "root")
    return builder.to_gbnf(root)
