"""Bad, unsupported, unsatisfiable or hostile schemas: a SchemaError naming keyword and pointer, quickly."""

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oaiproxy.grammar import GrammarBuilder, SchemaError, schema_to_gbnf


@pytest.mark.parametrize(
    "schema, keyword, pointer",
    [
        ({"type": 5}, "type", "/type"),
        ({"type": "strin"}, "type", "/type"),
        ({"required": "x"}, "required", "/required"),
        ({"minItems": -1}, "minItems", "/minItems"),
        ({"properties": {"a": {"maxLength": "3"}}}, "maxLength", "/properties/a/maxLength"),
        ({"$ref": "#/$defs/missing"}, "$ref", "/$ref"),
        ({"properties": {"a": {"$ref": "https://example.com/s.json"}}}, "$ref", "/properties/a/$ref"),
        ({"not": {"type": "string"}}, "not", "/not"),
        ({"type": "object", "properties": {"x": {"if": {}, "then": {}}}}, "if", "/properties/x/if"),
        ({"type": "object", "minProperties": 1}, "minProperties", "/minProperties"),
        ({"type": "object", "patternProperties": {"^a": {}}}, "patternProperties", "/patternProperties"),
        ({"type": "number", "multipleOf": 0.5}, "multipleOf", "/multipleOf"),
        ({"type": "array", "contains": {"type": "integer"}}, "contains", "/contains"),
        ({"type": "object", "dependentRequired": {"a": ["b"]}}, "dependentRequired", "/dependentRequired"),
        ({"type": "string", "pattern": "^(a)\\1$"}, "pattern", "/pattern"),
        ({"type": "string", "pattern": "(?=a)a"}, "pattern", "/pattern"),
        ({"type": "string", "pattern": "\\bword"}, "pattern", "/pattern"),
        ({"type": "string", "pattern": "a{0,100000}"}, "pattern", "/pattern"),
        ({"type": "string", "pattern": "x" * 2000}, "pattern", "/pattern"),
        ({"type": "string", "pattern": "[z-a]"}, "pattern", "/pattern"),
        ({"type": "string", "pattern": "(unclosed"}, "pattern", "/pattern"),
        ({"type": "string", "maxLength": 10**9}, "maxLength", "/maxLength"),
        ({"enum": list(range(5000))}, "enum", "/enum"),
        ({"type": "string", "pattern": "@", "maxLength": 5}, "maxLength", ""),
    ],
)
def test_refused_with_keyword_and_pointer(schema, keyword, pointer):
    with pytest.raises(SchemaError) as info:
        schema_to_gbnf(schema)
    err = info.value
    assert err.keyword == keyword, str(err)
    assert err.pointer == pointer, str(err)
    assert "\n" not in str(err) and (keyword in str(err))


@pytest.mark.parametrize(
    "schema",
    [
        False,
        {"not": {}} if False else {"type": "integer", "minimum": 5, "maximum": 4},
        {"type": "string", "minLength": 3, "maxLength": 2},
        {"enum": []} if False else {"type": "string", "enum": [1, 2]},
        {"allOf": [{"type": "string"}, {"type": "integer"}]},
        {"type": "object", "properties": {"a": False}, "required": ["a"]},
        {"type": "array", "minItems": 2, "maxItems": 1},
        {"type": "array", "items": False, "minItems": 1},
        {"anyOf": [False, {"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}]},
    ],
)
def test_unsatisfiable_schemas_are_refused(schema):
    with pytest.raises(SchemaError, match="admits no value"):
        schema_to_gbnf(schema)


def test_hostile_input_is_bounded():
    deep: dict = {"type": "integer"}
    for _ in range(5000):
        deep = {"type": "array", "items": deep}
    t = time.perf_counter()
    with pytest.raises(SchemaError, match="nest"):
        schema_to_gbnf(deep)
    circular: dict = {"type": "object"}
    circular["properties"] = {"self": circular}
    with pytest.raises(SchemaError):
        schema_to_gbnf(circular)
    with pytest.raises(SchemaError, match="not JSON|non-JSON"):
        schema_to_gbnf({"type": "string", "default": object()})
    with pytest.raises(SchemaError):
        schema_to_gbnf({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}})
    wide = {"type": "object", "properties": {f"p{i}": {"type": "string", "pattern": f"^x{{{i % 50}}}[a-z]{{1,999}}$"}
                                             for i in range(3000)}}
    with pytest.raises(SchemaError):
        schema_to_gbnf(wide)
    assert time.perf_counter() - t < 30


def test_builder_reports_the_same_errors():
    with pytest.raises(SchemaError) as info:
        GrammarBuilder().add_schema({"properties": {"a": {"type": 1}}}, "args")
    assert info.value.pointer == "/properties/a/type"


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False),
                       st.text(max_size=4), st.sampled_from(["string", "integer", "object", "array", "#", "#/$defs/a",
                                                             "^a+$", "date", "[", "a{2,1}"]))
_keys = st.sampled_from(["type", "properties", "required", "items", "prefixItems", "enum", "const", "anyOf", "oneOf",
                         "allOf", "$ref", "$defs", "minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength",
                         "pattern", "format", "additionalProperties", "minItems", "maxItems", "nullable", "a", "not"])
_schemas = st.recursive(_json_leaf, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(_keys, children, max_size=4)), max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_schemas)
def test_fuzz_never_crashes(schema):
    """Any input gives a grammar or a SchemaError: never a KeyError, TypeError or RecursionError."""
    try:
        grammar = schema_to_gbnf(schema)
    except SchemaError as e:
        assert e.pointer is not None and str(e)
        return
    assert grammar.startswith("root ::= ")


def test_left_recursive_reference_cycles_are_refused():
    for schema in ({"anyOf": [{"$ref": "#"}, {"type": "null"}]},
                   {"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}):
        with pytest.raises(SchemaError):
            schema_to_gbnf(schema)


def test_recursion_that_never_ends_is_refused():
    never_ends = {"type": "object", "properties": {"child": {"$ref": "#"}}, "required": ["child"]}
    with pytest.raises(SchemaError, match="finite"):
        schema_to_gbnf(never_ends)
    mutual = {"$defs": {"a": {"type": "array", "items": {"$ref": "#/$defs/b"}, "minItems": 1},
                        "b": {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "required": ["a"]}},
              "$ref": "#/$defs/a"}
    with pytest.raises(SchemaError, match="finite"):
        schema_to_gbnf(mutual)
    ends = {"type": "object", "properties": {"child": {"$ref": "#"}}}
    assert schema_to_gbnf(ends)
