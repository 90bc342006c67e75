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

See docs/json-schema.md for the supported keywords, relaxations and limits.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from typing import Any, Literal, overload

from oaiproxy.grammar import charsets as cs
from oaiproxy.grammar import regex as rx
from oaiproxy.grammar.formats import FORMATS, format_rules
from oaiproxy.grammar.ranges import UNBOUNDED_DIGITS, decimal_range, integer_range

# --- limits (documented in docs/json-schema.md) ------------------------------------------------
MAX_DEPTH = 64
"""Deepest nesting of subschemas followed while converting (also bounds $ref chains)."""
MAX_JSON_NESTING = 256
"""Deepest nesting of JSON containers in the schema document itself."""
MAX_SCHEMA_NODES = 100_000
MAX_RULES = 5_000
MAX_GRAMMAR_CHARS = 1_000_000
MAX_ENUM = 1_000
MAX_COUNT = 100_000
"""Largest minLength/maxLength/minItems/maxItems honoured."""
MAX_BOUND_DIGITS = 40
"""Longest integer/decimal bound (digits) accepted for minimum/maximum."""
DIRECT_REPEAT = 1_000
"""Counts up to this are written ``x{m,n}``; larger ones in chunks (llama.cpp refuses > 2000)."""

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

_OBJECT_KEYS = frozenset({"properties", "required", "additionalProperties"})
_ARRAY_KEYS = frozenset({"items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems"})
_STRING_KEYS = frozenset({"minLength", "maxLength", "pattern", "format"})
_NUMBER_KEYS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")
_KNOWN = (ANNOTATIONS | UNSUPPORTED | RELAXED | _OBJECT_KEYS | _ARRAY_KEYS | _STRING_KEYS | _NUMBER_KEYS
          | {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "nullable"})


class SchemaError(ValueError):
    """A schema the converter cannot turn into an exact grammar.

    ``keyword`` is the offending keyword (None when the schema as a whole is at
    fault) and ``pointer`` the JSON pointer of the place in the schema.
    """

    def __init__(self, message: str, *, keyword: str | None = None, pointer: str = ""):
        self.keyword = keyword
        self.pointer = pointer
        self.reason = message
        where = pointer or "/"
        super().__init__(f"{message} (at {where}" + (f", keyword '{keyword}')" if keyword else ")"))


def _ptr(base: str, *parts: Any) -> str:
    out = base
    for p in parts:
        out += "/" + str(p).replace("~", "~0").replace("/", "~1")
    return out


def _rule_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-")
    return name or "x"


# --- shared primitives ----------------------------------------------------------------------

_INT_BODY = f'"0" | "-"? [1-9] [0-9]{{0,{UNBOUNDED_DIGITS - 1}}}'
PRIMITIVES: dict[str, str] = {
    "ws": '" "?',
    "char": f"{cs.json_char_parts(cs.ALL)[0]} | escape",
    "escape": cs.json_char_parts(cs.ALL)[1] or "",
    "string": '"\\"" char* "\\""',
    "integer": _INT_BODY,
    "number": (f'"-"? ("0" | [1-9] [0-9]{{0,{UNBOUNDED_DIGITS - 1}}}) ("." [0-9]{{1,20}})? '
               f'([eE] [-+]? [0-9]{{1,3}})?'),
    "boolean": '"true" | "false"',
    "null": '"null"',
    "value": "object | array | string | number | boolean | null",
    "object": '"{" ( string ":" ws value ( "," ws string ":" ws value )* )? "}"',
    "array": '"[" ( value ( "," ws value )* )? "]"',
}
_PRIMITIVE_DEPS = {"char": ["escape"], "string": ["char"],
                   "value": ["object", "array", "string", "number", "boolean", "null"],
                   "object": ["string", "ws", "value"], "array": ["value", "ws"]}


def _is_symbol(expr: str) -> bool:
    """True when ``expr`` is one GBNF item that a quantifier can follow directly."""
    if re.fullmatch(r"[A-Za-z0-9-]+", expr):
        return True
    if re.fullmatch(r'"(?:[^"\\]|\\.)*"', expr):
        return True
    if re.fullmatch(r"\[\^?(?:[^\]\\]|\\.)*\]", expr):
        return True
    return False


class GrammarBuilder:
    """Collects deduplicated GBNF rules; composes schemas and literal text into one grammar.

    ``additional_properties`` is what an object schema without the keyword
    admits: True follows JSON Schema (extra keys allowed after the declared
    ones); False matches OpenAI's strict mode and keeps small models from
    inventing keys.
    """

    def __init__(self, *, additional_properties: bool = True):
        self.additional_properties_default = additional_properties
        self._rules: dict[str, str] = {}
        self._by_body: dict[str, str] = {}
        self._reserved: set[str] = set()
        self._size = 0
        # per add_schema call
        self._root_schema: Any = None
        self._prefix = ""
        self._refs: dict[str, str | None] = {}  # None: the target admits no value
        self._ref_used: set[str] = set()
        self._in_progress: dict[str, tuple[str, int]] = {}
        self._containers = 0  # objects/arrays entered: a cycle through none of them is left recursion
        self._cycles_empty = False  # probe mode: a recursive reference admits nothing

    # --- rules --------------------------------------------------------------------------

    @property
    def ws(self) -> str:
        """Name of the shared whitespace rule (an optional single space)."""
        return self.primitive("ws")

    def primitive(self, name: str) -> str:
        """Ensure a shared primitive rule (``string``, ``number``, ``value``…) exists; return its name."""
        if name not in self._rules:
            self._define(name, PRIMITIVES[name])
            for dep in _PRIMITIVE_DEPS.get(name, ()):
                self.primitive(dep)
        return name

    def add_rule(self, name: str, body: str) -> str:
        """Add a rule, reusing an existing rule with the same body; return the name to reference."""
        existing = self._by_body.get(body)
        if existing is not None:
            return existing
        final = self._free_name(_rule_name(name))
        self._define(final, body)
        return final

    def _free_name(self, name: str) -> str:
        candidate = name
        n = 1
        while candidate in self._rules or candidate in self._reserved or candidate in PRIMITIVES \
                or candidate.startswith("fmt-"):  # format rules keep their own names
            n += 1
            candidate = f"{name}-{n}"
        return candidate

    def _define(self, name: str, body: str) -> None:
        if len(self._rules) >= MAX_RULES:
            raise SchemaError(f"grammar needs more than {MAX_RULES} rules", pointer=self._prefix)
        self._size += len(name) + len(body) + 6
        if self._size > MAX_GRAMMAR_CHARS:
            raise SchemaError(f"grammar is larger than {MAX_GRAMMAR_CHARS} characters", pointer=self._prefix)
        self._rules[name] = body
        self._reserved.discard(name)
        self._by_body.setdefault(body, name)

    def _reserve(self, name: str) -> str:
        final = self._free_name(_rule_name(name))
        self._reserved.add(final)
        return final

    def json_char(self, s: cs.Intervals, name: str) -> str | None:
        """One JSON-encoded string character from code point set ``s``; escapes shared as a rule."""
        if s == cs.ALL:
            return self.primitive("char")
        raw, esc = cs.json_char_parts(s)
        if esc is not None and len(esc) > 40:
            esc = self.primitive("escape") if esc == PRIMITIVES["escape"] else self.add_rule(f"{name}-escape", esc)
        alts = [a for a in (raw, esc) if a]
        if not alts:
            return None
        return alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")"

    def literal(self, text: str) -> str:
        """GBNF for literal text around JSON (e.g. a dialect's ``<tool_call>`` marker)."""
        return cs.gbnf_literal(text)

    def to_gbnf(self, root: str) -> str:
        """The grammar text: ``root ::= <root>`` first, then every rule in the order added.

        ``root`` is a rule name or any GBNF expression (e.g. literals around rule names).
        """
        if root == "root" and "root" in self._rules:
            lines = [f"root ::= {self._rules['root']}"]
        elif "root" in self._rules:
            raise ValueError("a rule named 'root' exists already; pass it as the root")
        else:
            lines = [f"root ::= {root}"]
        lines += [f"{name} ::= {body}" for name, body in self._rules.items() if name != "root"]
        return "\n".join(lines) + "\n"

    # --- schemas ------------------------------------------------------------------------

    def add_schema(self, schema: Any, name: str, *, objects: str | None = None, strict: bool = False) -> str:
        """Emit rules for ``schema`` with names under ``name``; return the rule for one value of it.

        The grammar is that of ``enforced_schema(schema, objects=..., strict=...)`` — the
        schema the validator checks — exactly. ``objects`` defaults to the builder's
        ``additional_properties`` ("open" when True, "all" when False).
        Raises SchemaError for an invalid, unsupported, over-limit or unsatisfiable schema.
        """
        from oaiproxy.grammar.enforced import enforced_schema

        if objects is None:
            objects = "open" if self.additional_properties_default else "all"
        schema = enforced_schema(schema, objects=objects, strict=strict)  # type: ignore[arg-type]
        self._root_schema = schema
        self._prefix = ""
        self._refs = {}
        self._ref_used = set()
        self._in_progress = {}
        self._containers = 0
        try:
            expr = self._visit(schema, "", _rule_name(name), 0)
        except SchemaError:
            raise
        except RecursionError:
            raise SchemaError("schema is nested too deeply") from None
        if expr is None:
            raise SchemaError("schema admits no value", pointer="")
        if _is_symbol(expr) and re.fullmatch(r"[A-Za-z0-9-]+", expr):
            return expr
        return self.add_rule(name, expr)

    # The visitor returns a GBNF expression (usually a rule name) or None when the
    # (sub)schema admits no value at all.

    def _visit(self, schema: Any, ptr: str, name: str, depth: int) -> str | None:
        if depth > MAX_DEPTH:
            raise SchemaError(f"schema nesting exceeds the limit of {MAX_DEPTH}", pointer=ptr)
        if schema is True:
            return self.primitive("value")
        if schema is False:
            return None
        if not isinstance(schema, dict):
            raise SchemaError("a schema must be an object or a boolean", pointer=ptr)
        for key in schema:
            if key in UNSUPPORTED:
                raise SchemaError(f"'{key}' cannot be enforced by a grammar", keyword=key, pointer=_ptr(ptr, key))
        if "$ref" in schema:
            return self._visit_ref(schema, ptr, name, depth)
        if "allOf" in schema:
            merged = self._merge_all_of(schema, ptr, depth)
            return self._visit(merged, ptr, name, depth + 1)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self._visit_any_of(schema, key, ptr, name, depth)
        return self._visit_plain(schema, ptr, name, depth)

    def _resolve(self, ref: Any, ptr: str) -> tuple[Any, str]:
        where = _ptr(ptr, "$ref")
        if not isinstance(ref, str):
            raise SchemaError("'$ref' must be a string", keyword="$ref", pointer=where)
        if not ref.startswith("#"):
            raise SchemaError(f"only local references ('#/...') are supported, not {ref!r}", keyword="$ref",
                              pointer=where)
        fragment = ref[1:]
        if fragment and not fragment.startswith("/"):
            raise SchemaError(f"anchor references are not supported: {ref!r}", keyword="$ref", pointer=where)
        from urllib.parse import unquote

        node = self._root_schema
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
            merged = self._merge_all_of({"allOf": [{"$ref": schema["$ref"]}, rest]}, ptr, depth)
            return self._visit(merged, ptr, name, depth + 1)
        if target_ptr in self._refs:
            return self._refs[target_ptr]
        if target_ptr in self._in_progress:
            placeholder, containers = self._in_progress[target_ptr]
            if containers == self._containers:
                raise SchemaError("reference cycle outside any object or array (the schema refers to itself "
                                  "without consuming input)", keyword="$ref", pointer=_ptr(ptr, "$ref"))
            if self._cycles_empty:
                return None
            self._ref_used.add(placeholder)
            return placeholder
        ref_name = _rule_name(target_ptr.rsplit("/", 1)[-1]) if target_ptr else "root-ref"
        placeholder = self._reserve(ref_name)
        self._in_progress[target_ptr] = (placeholder, self._containers)
        try:
            expr = self._visit(target, target_ptr, ref_name, depth + 1)
        finally:
            del self._in_progress[target_ptr]
        if placeholder in self._ref_used:
            if expr is None or not self._has_finite_value(target, target_ptr, ref_name, depth):
                raise SchemaError("recursive schema admits no finite value (the recursion is never optional)",
                                  keyword="$ref", pointer=_ptr(ptr, "$ref"))
            self._define(placeholder, expr)
            result: str | None = placeholder
        else:
            self._reserved.discard(placeholder)
            result = expr
        self._refs[target_ptr] = result
        return result

    def _has_finite_value(self, target: Any, target_ptr: str, name: str, depth: int) -> bool:
        """Convert again with every recursive reference taken as empty: anything left is finite."""
        probe = GrammarBuilder(additional_properties=self.additional_properties_default)
        probe._root_schema = self._root_schema
        probe._cycles_empty = True
        probe._in_progress = {target_ptr: ("", -1)}
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

    def _merge_all_of(self, schema: dict[str, Any], ptr: str, depth: int) -> Any:
        """Merge allOf parts into one schema (the intersection), or False when unsatisfiable."""
        if depth > MAX_DEPTH:
            raise SchemaError(f"schema nesting exceeds the limit of {MAX_DEPTH}", pointer=ptr)
        parts = schema["allOf"]
        where = _ptr(ptr, "allOf")
        if not isinstance(parts, list) or not parts:
            raise SchemaError("'allOf' must be a non-empty array", keyword="allOf", pointer=where)
        base = {k: v for k, v in schema.items() if k != "allOf"}
        result: Any = base
        for i, part in enumerate(parts):
            part, part_ptr = self._deref(part, _ptr(where, i), depth)
            if isinstance(part, dict) and "allOf" in part:
                part = self._merge_all_of(part, part_ptr, depth + 1)
            result = _merge(result, part, where)
            if result is False:
                return False
        return result

    # --- anyOf / oneOf --------------------------------------------------------------------

    def _visit_any_of(self, schema: dict[str, Any], key: str, ptr: str, name: str, depth: int) -> str | None:
        branches = schema[key]
        where = _ptr(ptr, key)
        if not isinstance(branches, list) or not branches:
            raise SchemaError(f"'{key}' must be a non-empty array", keyword=key, pointer=where)
        rest = {k: v for k, v in schema.items()
                if k != key and k not in ANNOTATIONS and k not in ("$defs", "definitions")}
        alts: list[str] = []
        for i, branch in enumerate(branches):
            bptr = _ptr(where, i)
            # siblings apply to every branch: {"type": "object", "anyOf": [...]} is anyOf of intersections
            sub = {"allOf": [rest, branch]} if rest else branch
            expr = self._visit(sub, bptr, f"{name}-{i}", depth + 1)
            if expr is not None and expr not in alts:
                alts.append(expr)
        if not alts:
            return None
        if len(alts) == 1:
            return alts[0]
        return self.add_rule(name, " | ".join(alts))

    # --- plain schemas -------------------------------------------------------------------

    def _visit_plain(self, schema: dict[str, Any], ptr: str, name: str, depth: int) -> str | None:
        types = _types_of(schema, ptr)
        if "enum" in schema or "const" in schema:
            return self._visit_enum(schema, types, ptr, name)
        if types is None:
            return self.primitive("value")
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
        return self.add_rule(name, " | ".join(alts))

    def _visit_type(self, t: str, schema: dict[str, Any], ptr: str, name: str, depth: int) -> str | None:
        if t == "null":
            return self.primitive("null")
        if t == "boolean":
            return self.primitive("boolean")
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
                raise SchemaError("'enum' must be an array", keyword="enum", pointer=_ptr(ptr, "enum"))
            if len(values) > MAX_ENUM:
                raise SchemaError(f"'enum' has more than {MAX_ENUM} values", keyword="enum",
                                  pointer=_ptr(ptr, "enum"))
        if "const" in schema and "enum" in schema:
            values = [v for v in values if any(_json_equal(v, e) for e in schema["enum"])]
        rest = {k: v for k, v in schema.items() if k not in ("enum", "const") and k not in ANNOTATIONS}
        kept: list[Any] = []
        is_valid = _sibling_validator(rest, self._root_schema) if rest else None
        for v in values:
            if is_valid is not None and not is_valid(v):
                continue
            if not any(_json_equal(v, k) for k in kept):
                kept.append(v)
        if not kept:
            return None
        strings = [v for v in kept if isinstance(v, str)]
        others = [v for v in kept if not isinstance(v, str)]
        alts = []
        if strings:
            alts.append(self._string_choice(strings, ptr, kw))
        for v in others:
            alts.append(self._const_value(v, _ptr(ptr, kw)))
        body = " | ".join(alts)
        return self.add_rule(name, body)

    def _string_choice(self, strings: list[str], ptr: str, kw: str) -> str:
        """JSON string tokens for a set of values, factored as a trie so sampling stays cheap."""
        for s in strings:
            if any(0xD800 <= ord(c) <= 0xDFFF for c in s):
                raise SchemaError("string contains a lone surrogate", keyword=kw, pointer=_ptr(ptr, kw))
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
        ws = self.ws
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
            raise SchemaError("'format' must be a string", keyword="format", pointer=_ptr(ptr, "format"))
        if pattern is not None:  # a format beside a pattern is an annotation (enforced_schema drops it)
            return self._visit_pattern(pattern, lo, hi, ptr, name)
        if fmt in FORMATS:
            return self._visit_format(fmt, lo, hi, ptr, name)
        if lo == 0 and hi is None:
            return self.primitive("string")
        char = self.primitive("char")
        return self.add_rule(name, f'"\\"" {self._repeat(char, lo, hi, name)} "\\""')

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
                              pointer=_ptr(ptr, "minLength"))
        rules, entry = built
        for rule_name, body in rules.items():
            if self._rules.get(rule_name, body) != body:
                raise SchemaError(f"rule name {rule_name!r} is taken", pointer=ptr)  # pragma: no cover
            if rule_name not in self._rules:
                self._define(rule_name, body)
        return self.add_rule(name, f'"\\"" {entry} "\\""')

    def _visit_pattern(self, pattern: Any, lo: int, hi: int | None, ptr: str, name: str) -> str | None:
        where = _ptr(ptr, "pattern")
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
                tightened = _intersect_length(body, start, end, lo, hi)
                if tightened is None:
                    raise SchemaError("cannot combine this pattern with minLength/maxLength exactly",
                                      keyword="maxLength" if hi is not None else "minLength", pointer=ptr)
                if tightened is False:
                    continue
                body = tightened
            compiled = _RegexCompiler(self, name).compile(body)
            if compiled is None:
                continue
            parts = []
            if not start:
                parts.append(self.primitive("char") + "*")
            if compiled:
                parts.append(compiled)
            if not end:
                parts.append(self.primitive("char") + "*")
            alts.append(" ".join(parts) if parts else '""')
        if not alts:
            return None
        inner = alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")"
        return self.add_rule(name, f'"\\"" {inner} "\\""')

    def _repeat(self, symbol: str, lo: int, hi: int | None, name: str) -> str:
        """``symbol`` repeated lo..hi times, in a form llama.cpp expands cheaply."""
        if not _is_symbol(symbol) or symbol.startswith("("):
            symbol = self.add_rule(name + "-item", symbol)
        if hi is not None and hi > DIRECT_REPEAT or lo > DIRECT_REPEAT:
            chunk = self.add_rule(f"{name}-chunk", f"{symbol}{{{DIRECT_REPEAT}}}")
            parts = []
            q, r = divmod(lo, DIRECT_REPEAT)
            if q:
                parts.append(_quant(chunk, q, q))
            if r:
                parts.append(_quant(symbol, r, r))
            if hi is None:
                parts.append(f"{symbol}*")
            else:
                extra = hi - lo
                if extra <= DIRECT_REPEAT:
                    parts.append(_quant(symbol, 0, extra))
                else:
                    q2, r2 = divmod(extra, DIRECT_REPEAT)
                    parts.append(f"({_quant(chunk, 0, q2 - 1)} {_quant(symbol, 0, DIRECT_REPEAT - 1)} | "
                                 f"{_quant(chunk, q2, q2)} {_quant(symbol, 0, r2)})")
            return " ".join(p for p in parts if p)
        return _quant(symbol, lo, hi)

    # --- numbers -------------------------------------------------------------------------

    def _bounds(self, schema: dict[str, Any], ptr: str) -> tuple[Decimal | None, bool, Decimal | None, bool]:
        def num(key: str) -> Decimal | None:
            v = schema.get(key)
            if v is None or isinstance(v, bool):
                return None
            if not isinstance(v, (int, float)):
                raise SchemaError(f"'{key}' must be a number", keyword=key, pointer=_ptr(ptr, key))
            try:
                d = Decimal(str(v)) if isinstance(v, float) else Decimal(v)
            except InvalidOperation:
                raise SchemaError(f"'{key}' is not a finite number", keyword=key, pointer=_ptr(ptr, key)) from None
            if not d.is_finite():
                raise SchemaError(f"'{key}' is not a finite number", keyword=key, pointer=_ptr(ptr, key))
            exponent = d.as_tuple().exponent
            assert isinstance(exponent, int)  # finite: not 'n', 'N' or 'F'
            if len(d.as_tuple().digits) + max(0, exponent) > MAX_BOUND_DIGITS or exponent < -MAX_BOUND_DIGITS:
                raise SchemaError(f"'{key}' has more than {MAX_BOUND_DIGITS} digits", keyword=key,
                                  pointer=_ptr(ptr, key))
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
            return self.primitive("integer")
        ilo = None if lo is None else (math.floor(lo) + 1 if lo_x else math.ceil(lo))
        ihi = None if hi is None else (math.ceil(hi) - 1 if hi_x else math.floor(hi))
        alts = integer_range(ilo, ihi)
        if not alts:
            return None
        return self.add_rule(name, " | ".join(alts))

    def _visit_number(self, schema: dict[str, Any], ptr: str, name: str) -> str | None:
        lo, lo_x, hi, hi_x = self._bounds(schema, ptr)
        if lo is None and hi is None:
            return self.primitive("number")
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
        return self.add_rule(name, " | ".join(alts))

    # --- objects -------------------------------------------------------------------------

    def _visit_object(self, schema: dict[str, Any], ptr: str, name: str, depth: int) -> str | None:
        self._containers += 1
        try:
            return self._visit_object_inner(schema, ptr, name, depth)
        finally:
            self._containers -= 1

    def _visit_object_inner(self, schema: dict[str, Any], ptr: str, name: str, depth: int) -> str | None:
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise SchemaError("'properties' must be an object", keyword="properties", pointer=_ptr(ptr, "properties"))
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise SchemaError("'required' must be an array of strings", keyword="required",
                              pointer=_ptr(ptr, "required"))
        extra = schema.get("additionalProperties", self.additional_properties_default)
        if not isinstance(extra, (bool, dict)):
            raise SchemaError("'additionalProperties' must be a schema", keyword="additionalProperties",
                              pointer=_ptr(ptr, "additionalProperties"))
        prefix = "" if name == "root" else name + "-"
        ws = self.ws
        req_kvs: list[str] = []
        opt_kvs: list[str] = []
        ordered = [k for k in props if k in required] + [k for k in dict.fromkeys(required) if k not in props]
        for key in ordered + [k for k in props if k not in required]:
            is_required = key in required
            if key in props:
                sub, sub_ptr = props[key], _ptr(ptr, "properties", key)
            else:
                sub, sub_ptr = extra, _ptr(ptr, "additionalProperties")
            value = self._visit(sub, sub_ptr, prefix + _rule_name(key), depth + 1)
            if value is None:
                if is_required:
                    return None
                continue
            if any(0xD800 <= ord(c) <= 0xDFFF for c in key):
                raise SchemaError("property name contains a lone surrogate", keyword="properties",
                                  pointer=sub_ptr)
            kv = self.add_rule(f"{prefix}{_rule_name(key)}-kv", f'{cs.json_string_literal(key)} ":" {ws} {value}')
            (req_kvs if is_required else opt_kvs).append(kv)
        extra_kv = None
        if extra is not False:
            extra_value = self._visit(extra, _ptr(ptr, "additionalProperties"), f"{prefix}additional", depth + 1)
            if extra_value is not None:
                key_rule = self._key_not_in(list(props) + list(required), f"{prefix}additional-key")
                extra_kv = self.add_rule(f"{prefix}additional-kv", f'{key_rule} ":" {ws} {extra_value}')
        # declared properties first (required, then optional, each optional may be absent), then extras
        tail_parts = [f'("," {ws} {kv})?' for kv in opt_kvs]
        if extra_kv:
            tail_parts.append(f'("," {ws} {extra_kv})*')
        if req_kvs:
            body = '"{" ' + f' "," {ws} '.join(req_kvs)
            if tail_parts:
                body += " " + " ".join(tail_parts)
            return self.add_rule(name, body + ' "}"')
        if not tail_parts:
            return self.add_rule(name, '"{}"')
        # all optional: whichever comes first has no comma; chain rules keep this linear
        items = opt_kvs + ([extra_kv] if extra_kv else [])
        rest: str | None = None  # rule for "the items after index i, each with a leading comma"
        firsts: list[str] = []
        for i in range(len(items) - 1, -1, -1):
            is_extra = extra_kv is not None and i == len(items) - 1
            if is_extra:
                firsts.append(f'{items[i]} ("," {ws} {items[i]})*')
                rest = self.add_rule(f"{name}-rest-{i}", f'("," {ws} {items[i]})*')
                continue
            firsts.append(f"{items[i]} {rest}" if rest else items[i])
            seq = f'("," {ws} {items[i]})?' + (f" {rest}" if rest else "")
            rest = self.add_rule(f"{name}-rest-{i}", seq)
        firsts.reverse()
        return self.add_rule(name, '"{" ( ' + " | ".join(firsts) + ' )? "}"')

    def _key_not_in(self, names: list[str], rule: str) -> str:
        """A JSON object key that is none of ``names`` (decoded comparison, any spelling)."""
        names = sorted(set(names))
        char = self.primitive("char")
        if not names:
            return self.primitive("string")

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
            other_char = self.json_char(others, rule)
            if other_char:
                alts.append(f"{other_char} {char}*")
            body = " | ".join(alts)
            if not ends_here:
                return f"({body})?" if alts else ""
            return f"({body})" if alts else ""

        return self.add_rule(rule, '"\\"" ' + node(names, 0) + ' "\\""')

    # --- arrays --------------------------------------------------------------------------

    def _visit_array(self, schema: dict[str, Any], ptr: str, name: str, depth: int) -> str | None:
        self._containers += 1
        try:
            return self._visit_array_inner(schema, ptr, name, depth)
        finally:
            self._containers -= 1

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
            raise SchemaError(f"'{prefix_key}' must be an array", keyword=prefix_key, pointer=_ptr(ptr, prefix_key))
        if not isinstance(rest, (bool, dict)):
            raise SchemaError(f"'{rest_key}' must be a schema", keyword=rest_key, pointer=_ptr(ptr, rest_key))
        item_base = name if name != "root" else "root"
        prefix_exprs: list[str] = []
        for i, sub in enumerate(prefix_schemas):
            if hi is not None and i >= hi:
                break
            expr = self._visit(sub, _ptr(ptr, prefix_key, i), f"{item_base}-{i}", depth + 1)
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
                rest_expr = self._visit(rest, _ptr(ptr, rest_key), f"{item_base}-item", depth + 1)
                if rest_expr is None:
                    hi = k if hi is None else min(hi, k)
        if hi is not None and hi < lo:
            return None
        ws = self.ws
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
            group = self.add_rule(f"{name}-next", f"{sep} {rest_expr}")
            return self._repeat(group, rlo, rhi, name)

        if k > 0:
            first = prefix_exprs[0]
        elif rest_expr is not None and (hi is None or hi > 0):
            first = rest_expr
        else:
            first = None
        if first is None:
            return self.add_rule(name, '"[]"')
        after = tail(1)
        elements = f"{first} {after}".strip()
        body = f'"[" {elements} "]"' if lo >= 1 else f'"[" ({elements})? "]"'
        return self.add_rule(name, body)


def _quant(symbol: str, lo: int, hi: int | None) -> str:
    if hi is None:
        return f"{symbol}*" if lo == 0 else f"{symbol}+" if lo == 1 else f"{symbol}{{{lo},}}"
    if hi == 0:
        return ""
    if lo == hi:
        return symbol if lo == 1 else f"{symbol}{{{lo}}}"
    if lo == 0 and hi == 1:
        return f"{symbol}?"
    return f"{symbol}{{{lo},{hi}}}"


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


class _RegexCompiler:
    """Regex AST -> GBNF over JSON-encoded characters."""

    def __init__(self, builder: GrammarBuilder, name: str):
        self.b = builder
        self.name = name

    def compile(self, node: rx.Node) -> str | None:
        if isinstance(node, rx.Chars):
            if not node.set:
                return None
            return self.chars(node.set)
        if isinstance(node, rx.Seq):
            parts: list[str] = []
            literal = ""
            for item in node.items:
                if isinstance(item, rx.Chars) and len(item.set) == 1 and item.set[0][0] == item.set[0][1] \
                        and 0x20 <= item.set[0][0] < 0x7F and chr(item.set[0][0]) not in '"\\':
                    literal += chr(item.set[0][0])
                    continue
                if literal:
                    parts.append(cs.gbnf_literal(literal))
                    literal = ""
                c = self.compile(item)
                if c is None:
                    return None
                if c:
                    parts.append(c)
            if literal:
                parts.append(cs.gbnf_literal(literal))
            return " ".join(parts)
        if isinstance(node, rx.Alt):
            opts = []
            empty = False
            for o in node.options:
                c = self.compile(o)
                if c is None:
                    continue
                if c == "":
                    empty = True
                elif c not in opts:
                    opts.append(c)
            if not opts:
                return "" if empty else None
            inner = "(" + " | ".join(opts) + ")"
            return inner + "?" if empty else inner
        if isinstance(node, rx.Repeat):
            c = self.compile(node.item)
            if c is None:
                return "" if node.lo == 0 else None
            if c == "" or node.hi == 0:
                return ""
            if not (_is_symbol(c) and not c.startswith("(")) or (c.startswith('"') and len(c) > 3):
                c = self.b.add_rule(f"{self.name}-part", c)
            return _quant(c, node.lo, node.hi)
        raise TypeError(node)

    def chars(self, s: cs.Intervals) -> str:
        expr = self.b.json_char(s, self.name) or ""
        if _is_symbol(expr):
            return expr
        return self.b.add_rule(f"{self.name}-char", expr)


def _intersect_length(
    body: rx.Node, start: bool, end: bool, lo: int, hi: int | None
) -> rx.Node | Literal[False] | None:
    """Fold minLength/maxLength into a regex body when that can be done exactly.

    Returns the (possibly tightened) body, False when no string qualifies, or
    None when the combination is beyond a grammar-friendly rewrite.
    """
    if not (start and end):
        return None
    plo, phi = rx.length_bounds(body)
    if plo >= lo and (hi is None or (phi is not None and phi <= hi)):
        return body
    if hi is not None and plo > hi:
        return False
    items = list(body.items) if isinstance(body, rx.Seq) else [body]
    variable = [i for i, it in enumerate(items) if rx.length_bounds(it)[0] != rx.length_bounds(it)[1]]
    if len(variable) != 1:
        return None
    idx = variable[0]
    rep = items[idx]
    if not (isinstance(rep, rx.Repeat) and isinstance(rep.item, rx.Chars)):
        return None
    fixed = plo - rep.lo
    new_lo = max(rep.lo, lo - fixed)
    new_hi = rep.hi
    if hi is not None:
        new_hi = hi - fixed if new_hi is None else min(new_hi, hi - fixed)
    if new_hi is not None and new_hi < new_lo:
        return False
    if new_lo > MAX_COUNT or (new_hi is not None and new_hi > MAX_COUNT):
        return None
    items[idx] = rx.Repeat(rep.item, new_lo, new_hi)
    return rx.Seq(tuple(items)) if len(items) > 1 else items[0]


# --- schema helpers -------------------------------------------------------------------------

def _types_of(schema: dict[str, Any], ptr: str) -> list[str] | None:
    """The JSON types a schema admits, or None for any value (no type keyword, no type-specific keywords)."""
    t = schema.get("type")
    where = _ptr(ptr, "type")
    if t is None:
        inferred = []
        if any(k in schema for k in _OBJECT_KEYS):
            inferred.append("object")
        if any(k in schema for k in _ARRAY_KEYS - {"uniqueItems"}):
            inferred.append("array")
        if any(k in schema for k in _STRING_KEYS - {"format"}) or (
                "format" in schema and schema["format"] in FORMATS):
            inferred.append("string")
        if any(k in schema for k in _NUMBER_KEYS):
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
            if x not in _TYPES:
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
        raise SchemaError(f"'{key}' must be a non-negative integer", keyword=key, pointer=_ptr(ptr, key))
    if v > MAX_COUNT:
        raise SchemaError(f"'{key}' exceeds the limit of {MAX_COUNT}", keyword=key, pointer=_ptr(ptr, key))
    return v


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


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


_MERGE_MIN = ("minLength", "minItems", "minimum", "exclusiveMinimum")
_MERGE_MAX = ("maxLength", "maxItems", "maximum", "exclusiveMaximum")


def _merge(a: Any, b: Any, where: str) -> Any:
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
        if _json_equal(av, bv):
            continue
        if key == "type":
            ta = [av] if isinstance(av, str) else av
            tb = [bv] if isinstance(bv, str) else bv
            if not isinstance(ta, list) or not isinstance(tb, list):
                raise SchemaError("'type' must be a type name or an array of them", keyword="type", pointer=where)
            ta2 = set(ta) | ({"integer"} if "number" in ta else set())
            tb2 = set(tb) | ({"integer"} if "number" in tb else set())
            both = [t for t in _TYPES if t in ta2 and t in tb2]
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
            out[key] = [v for v in av if any(_json_equal(v, w) for w in bv)]
            if not out[key]:
                return False
        elif key == "const":
            return False
        elif key in ("items", "additionalProperties", "additionalItems") and isinstance(av, (dict, bool)) \
                and isinstance(bv, (dict, bool)):
            out[key] = {"allOf": [av, bv]}
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


# --- schema checks --------------------------------------------------------------------------

def _shape_check(schema: Any) -> None:
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
    _shape_check(schema)
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
    pointer = _ptr("", *path)
    raise SchemaError(f"invalid schema: {first_error.message}", keyword=keyword, pointer=pointer)


# --- entry point ----------------------------------------------------------------------------

def schema_to_gbnf(schema: dict[str, Any] | bool) -> str:
    """The whole grammar (root rule ``root``) admitting exactly the JSON values of ``schema``.

    Memoised per schema (keyed on its JSON text), so a tool list converts once per process.
    """
    _shape_check(schema)
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
