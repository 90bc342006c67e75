"""The rule set of one grammar: deduplicated GBNF rules, shared primitives, one ``root``.

A dialect composes its grammar here from literal text, its own rules and the rules of each tool's
schema (:meth:`GrammarBuilder.add_schema`, converted by :mod:`oaiproxy.grammar.converter`). A rule
whose body exists already is reused under its first name, so the grammar stays small; a rule that
must keep a given name (a format, a dialect's fixed entry point) is added with
:meth:`GrammarBuilder.add_named_rule`.
"""

from __future__ import annotations

import re
from typing import Any

from oaiproxy.grammar import charsets as cs
from oaiproxy.grammar.errors import SchemaError
from oaiproxy.grammar.limits import MAX_GRAMMAR_CHARS, MAX_RULES
from oaiproxy.grammar.ranges import UNBOUNDED_DIGITS


def rule_name(text: str) -> str:
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


def is_symbol(expr: str) -> bool:
    """True when ``expr`` is one GBNF item that a quantifier can follow directly."""
    if re.fullmatch(r"[A-Za-z0-9-]+", expr):
        return True
    if re.fullmatch(r'"(?:[^"\\]|\\.)*"', expr):
        return True
    if re.fullmatch(r"\[\^?(?:[^\]\\]|\\.)*\]", expr):
        return True
    return False


def quant(symbol: str, lo: int, hi: int | None) -> str:
    if hi is None:
        return f"{symbol}*" if lo == 0 else f"{symbol}+" if lo == 1 else f"{symbol}{{{lo},}}"
    if hi == 0:
        return ""
    if lo == hi:
        return symbol if lo == 1 else f"{symbol}{{{lo}}}"
    if lo == 0 and hi == 1:
        return f"{symbol}?"
    return f"{symbol}{{{lo},{hi}}}"


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

    # --- rules --------------------------------------------------------------------------

    @property
    def ws(self) -> str:
        """Name of the shared whitespace rule (an optional single space)."""
        return self.primitive("ws")

    def primitive(self, name: str) -> str:
        """Ensure a shared primitive rule (``string``, ``number``, ``value``…) exists; return its name."""
        if name not in self._rules:
            self.define(name, PRIMITIVES[name])
            for dep in _PRIMITIVE_DEPS.get(name, ()):
                self.primitive(dep)
        return name

    def add_rule(self, name: str, body: str) -> str:
        """Add a rule, reusing an existing rule with the same body; return the name to reference."""
        existing = self._by_body.get(body)
        if existing is not None:
            return existing
        final = self._free_name(rule_name(name))
        self.define(final, body)
        return final

    def _free_name(self, name: str) -> str:
        candidate = name
        n = 1
        while candidate in self._rules or candidate in self._reserved or candidate in PRIMITIVES \
                or candidate.startswith("fmt-"):  # format rules keep their own names
            n += 1
            candidate = f"{name}-{n}"
        return candidate

    def add_named_rule(self, name: str, body: str) -> str:
        """Add a rule under exactly ``name`` (no reuse of an equal body under another name).

        For rules other text refers to by name: a format's shared rules, a dialect's entry points.
        Adding the same name with the same body again is a no-op; with another body, an error.
        """
        existing = self._rules.get(name)
        if existing is None:
            self.define(name, body)
        elif existing != body:
            raise ValueError(f"grammar rule {name!r} is defined already with another body")
        return name

    def define(self, name: str, body: str) -> None:
        """Set rule ``name`` (a name from :meth:`reserve`, or a fixed one), within the size limits."""
        if len(self._rules) >= MAX_RULES:
            raise SchemaError(f"grammar needs more than {MAX_RULES} rules")
        self._size += len(name) + len(body) + 6
        if self._size > MAX_GRAMMAR_CHARS:
            raise SchemaError(f"grammar is larger than {MAX_GRAMMAR_CHARS} characters")
        self._rules[name] = body
        self._reserved.discard(name)
        self._by_body.setdefault(body, name)

    def reserve(self, name: str) -> str:
        """A free rule name, held for a rule defined later (a recursive reference names it first)."""
        final = self._free_name(rule_name(name))
        self._reserved.add(final)
        return final

    def release(self, name: str) -> None:
        """Give back a name from :meth:`reserve` that was not needed."""
        self._reserved.discard(name)

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
        from oaiproxy.grammar.converter import SchemaConverter
        from oaiproxy.grammar.enforced import enforced_schema

        if objects is None:
            objects = "open" if self.additional_properties_default else "all"
        enforced = enforced_schema(schema, objects=objects, strict=strict)  # type: ignore[arg-type]
        return SchemaConverter(self, enforced).convert(name)
