"""Each supported keyword, enforced exactly: valid instances accepted in every spelling, invalid ones rejected."""

import pytest

from oaiproxy.grammar import schema_to_gbnf
from oaiproxy.grammar.errors import SchemaError
from tests.gbnf_oracle import accepts
from tests.grammar.helpers import check

ANY_VALUES = [None, True, False, 0, -12, 3.5, 1e-07, "", "x", "é😀\n\"\\", [], [1, "a", None], {}, {"a": {"b": [1]}}]


def test_empty_and_true_schema_admit_any_json_value():
    check({}, valid=ANY_VALUES)
    check(True, valid=ANY_VALUES)
    check({"title": "anything", "description": "annotations only", "$comment": "x", "examples": [1]},
          valid=ANY_VALUES)


@pytest.mark.parametrize(
    "type_, valid, invalid",
    [
        ("null", [None], [0, "", False]),
        ("boolean", [True, False], [0, "true", None]),
        ("integer", [0, -1, 42, 10**18], [1.5, "1", None, True]),
        ("number", [0, -1, 2.5, -0.001, 1e-05, 1.5e300, 123456789.125], ["1", None, [1]]),
        ("string", ["", "abc", "é", "日本", "😀", "\u0000\u001f\x7f", "tab\tnew\nline", 'q"b\\s/'], [1, None, ["a"]]),
        ("array", [[], [1, [2, [3]]], [{"a": None}]], [{}, "[]"]),
        ("object", [{}, {"a": 1, "b": [None]}, {"é": "ü"}], [[], "{}"]),
    ],
)
def test_each_type(type_, valid, invalid):
    check({"type": type_}, valid=valid, invalid=invalid)


def test_type_array_and_nullable():
    check({"type": ["string", "null"]}, valid=["a", None], invalid=[1, False])
    check({"type": ["integer", "boolean"]}, valid=[3, True], invalid=["3", None, 2.5])
    grammar = schema_to_gbnf({"type": "string", "nullable": True})
    assert accepts(grammar, "null") and accepts(grammar, '"a"') and not accepts(grammar, "1")


def test_enum_and_const():
    check({"enum": ["red", "green", 3, None, True, [1, 2], {"a": "b"}]},
          valid=["red", "green", 3, None, True, [1, 2], {"a": "b"}],
          invalid=["blue", 4, False, [1], {"a": "c"}, "gree", "greenn"])
    check({"const": "Zürich"}, valid=["Zürich"], invalid=["Zurich", "zürich"])
    check({"const": {"k": [1, "x"]}}, valid=[{"k": [1, "x"]}], invalid=[{"k": [1]}, {}])
    many = [f"option_{i}" for i in range(300)] + ["é", 'quote"d', "new\nline"]
    check({"enum": many}, valid=many[::7] + ["é", 'quote"d', "new\nline"], invalid=["option_300", "option_",
                                                                                    "option_1x", ""])
    # an enum filtered by its type: only the values of that type remain
    check({"type": "string", "enum": ["a", 1, None]}, valid=["a"], invalid=[1, None])
    # integral numbers: json.dumps writes 1.0 for a float and jsonschema counts it equal to 1
    check({"enum": [1]}, valid=[1, 1.0], invalid=[2, 1.5])


def test_properties_required_order_and_optional():
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}},
        "required": ["c", "a"],
        "additionalProperties": False,
    }
    # canonical order: required ones in `properties` order (a, c), then optional ones (b)
    check(schema, valid=[{"a": 1, "c": True}, {"a": 1, "c": False, "b": "x"}],
          invalid=[{"a": 1}, {"c": True}, {"a": 1, "c": True, "d": 1}, {"a": "1", "c": True}])
    grammar = schema_to_gbnf(schema)
    assert not accepts(grammar, '{"c": true, "a": 1}')  # not the canonical order
    assert not accepts(grammar, '{"a": 1,  "c": true}')  # whitespace is bounded to one space
    assert not accepts(grammar, '{"a": 1,\n"c": true}')


def test_all_optional_properties():
    schema = {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"},
                                               "z": {"type": "integer"}}, "additionalProperties": False}
    check(schema, valid=[{}, {"x": 1}, {"y": 2}, {"z": 3}, {"x": 1, "z": 3}, {"y": 2, "z": 3}, {"x": 1, "y": 2,
                                                                                                "z": 3}],
          invalid=[{"w": 1}, {"x": "1"}])
    grammar = schema_to_gbnf(schema)
    assert not accepts(grammar, '{,"x": 1}') and not accepts(grammar, '{"x": 1,}')


def test_additional_properties():
    declared = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    check(declared, valid=[{"name": "a"}, {"name": "a", "extra": [1]}, {"name": "a", "nam": 1, "names": 2, "é": 3}],
          invalid=[{"extra": 1}])
    grammar = schema_to_gbnf(declared)
    # an extra key cannot repeat a declared one, whatever its spelling
    assert not accepts(grammar, '{"name": "a", "name": 1}')
    assert not accepts(grammar, '{"name": "a", "n\\u0061me": 1}')
    typed = dict(declared, additionalProperties={"type": "integer"})
    check(typed, valid=[{"name": "a", "k": 1, "j": -2}], invalid=[{"name": "a", "k": "1"}])
    check(dict(declared, additionalProperties=False), valid=[{"name": "a"}], invalid=[{"name": "a", "k": 1}])
    check({"type": "object", "additionalProperties": {"type": "boolean"}}, valid=[{}, {"a": True, "b": False}],
          invalid=[{"a": 1}])
    # a required name without a declared schema takes the additionalProperties schema
    check({"type": "object", "required": ["id"], "additionalProperties": {"type": "integer"}},
          valid=[{"id": 1}, {"id": 1, "k": 2}], invalid=[{}, {"id": "1"}])


def test_unicode_and_escaped_property_names():
    schema = {"type": "object", "properties": {"clé": {"type": "string"}, 'a"b': {"type": "integer"},
                                               "日本": {"type": "boolean"}},
              "required": ["clé", 'a"b', "日本"], "additionalProperties": False}
    check(schema, valid=[{"clé": "vàlue", 'a"b': 1, "日本": True}], invalid=[{"cle": "v", 'a"b': 1, "日本": True}])


def test_arrays_items_and_bounds():
    check({"type": "array", "items": {"type": "integer"}}, valid=[[], [1], [1, 2, 3]], invalid=[["a"], [1, None]])
    check({"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 3},
          valid=[["a", "b"], ["a", "b", "c"]], invalid=[[], ["a"], ["a", "b", "c", "d"]])
    check({"type": "array", "minItems": 1}, valid=[[None], [1, "a"]], invalid=[[]])
    check({"type": "array", "maxItems": 0}, valid=[[]], invalid=[[1]])
    check({"type": "array", "items": False}, valid=[[]], invalid=[[1]])


def test_prefix_items():
    schema = {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": {"type": "boolean"}}
    check(schema, valid=[[], ["a"], ["a", 1], ["a", 1, True, False]], invalid=[[1], ["a", "b"], ["a", 1, 2]])
    closed = {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False, "minItems": 2}
    check(closed, valid=[["a", 1]], invalid=[["a"], ["a", 1, True]])
    # draft 7 tuple form
    check({"$schema": "http://json-schema.org/draft-07/schema#", "type": "array", "items": [{"type": "null"}],
           "additionalItems": False}, valid=[[], [None]], invalid=[[None, None], [1]])


def test_string_lengths_count_characters_not_escapes():
    schema = {"type": "string", "minLength": 2, "maxLength": 3}
    check(schema, valid=["ab", "abc", "é\n", "😀😀", '\\"'], invalid=["a", "abcd", "", "😀😀😀😀"])


@pytest.mark.parametrize(
    "pattern, valid, invalid",
    [
        ("^[a-z]+$", ["abc", "z"], ["", "aB", "abc1"]),
        ("^\\d{3}-\\d{4}$", ["555-1234"], ["5551234", "555-123", "a55-1234"]),
        ("^(foo|bar)baz?$", ["fooba", "barbaz"], ["foobazz", "baz"]),
        ("^a.c$", ["abc", "a\"c", "aéc", "a😀c"], ["a\nc", "ac"]),
        ("^[^0-9\\s]*$", ["abc", "é", ""], ["a1", "a b", "a\nb"]),
        ("^\\w+@\\w+\\.com$", ["joe@mail.com"], ["joe@mail.org", "@mail.com"]),
        ("^x{2,4}?$", ["xx", "xxxx"], ["x", "xxxxx"]),
        ("^\\u00e9[\\u0100-\\u017F]\\x41$", ["éĀA"], ["eĀA", "éAA"]),
        ("^[\"\\\\]+$", ['"', "\\", '"\\"'], ["a", ""]),
        ("^(?:ab)+(c)??$", ["ab", "ababc"], ["abcc", "a"]),
        ("^$", [""], ["a"]),
        ("^a|b$", ["a", "ab", "b", "xb", "abb"], ["", "x", "ba"]),
        ("ab", ["ab", "xaby", "ab\n"], ["a", "b", "ba"]),
        ("^\\.[.]\\-\\/$", ["..-/"], ["ab-/"]),
        ("^[\\d\\-]{2}$", ["1-", "--"], ["1a"]),
    ],
)
def test_patterns(pattern, valid, invalid):
    check({"type": "string", "pattern": pattern}, valid=valid, invalid=invalid)


def test_ecma_named_groups():
    grammar = schema_to_gbnf({"type": "string", "pattern": "^(?<year>[0-9]{4})$"})
    assert accepts(grammar, '"2024"') and not accepts(grammar, '"202"')


def test_pattern_with_length_is_folded_into_the_repetition():
    check({"type": "string", "pattern": "^[A-Z][a-z]+$", "maxLength": 4, "minLength": 3},
          valid=["Abc", "Abcd"], invalid=["Ab", "Abcde", "abc"])
    check({"type": "string", "pattern": "^[0-9]{5}$", "maxLength": 10}, valid=["12345"], invalid=["1234"])


@pytest.mark.parametrize(
    "fmt, valid, invalid",
    [
        ("date", ["2024-02-29", "2000-02-29", "1999-12-31", "0001-01-01"],
         ["2023-02-29", "1900-02-29", "2024-13-01", "2024-04-31", "2024-1-01", "0000-01-01"]),
        # no leap second: the proxy's check (rfc3339-validator) refuses "23:59:60Z"
        ("time", ["23:59:59Z", "08:30:00+02:00", "12:00:00.123456z"],
         ["24:00:00Z", "12:00:00", "12:60:00Z", "23:59:60Z"]),
        ("date-time", ["2024-05-17T08:30:00Z", "2024-05-17t08:30:00.5-05:00"],
         ["2024-05-17 08:30:00Z", "2024-05-17T08:30Z"]),
        ("uuid", ["123e4567-e89b-12d3-a456-426614174000", "123E4567-E89B-12D3-A456-426614174000"],
         ["123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-42661417400g"]),
        ("email", ["joe@example.com", "first.last+tag@mail.example.co.uk"],
         ["joe@", "@example.com", "joe@example", "joe..x@example.com", "a b@example.com"]),
        ("ipv4", ["192.168.0.1", "0.0.0.0", "255.255.255.255"], ["256.1.1.1", "01.1.1.1", "1.1.1"]),
        ("hostname", ["example.com", "a-b.c"], ["-a.com", "a_b.com"]),
        ("uri", ["https://example.com/a?b=c#d", "mailto:joe@example.com"], ["no scheme", "1http://x"]),
    ],
)
def test_formats(fmt, valid, invalid):
    from oaiproxy.grammar import FORMAT_CHECKER

    grammar = schema_to_gbnf({"type": "string", "format": fmt})
    for v in valid:
        assert FORMAT_CHECKER.conforms(v, fmt), f"test bug: {v} is not a valid {fmt}"
        assert accepts(grammar, f'"{v}"'), (fmt, v)
    for v in invalid:
        assert not accepts(grammar, f'"{v}"'), (fmt, v)


def test_unknown_format_is_an_annotation():
    check({"type": "string", "format": "phone-number"}, valid=["anything", ""], invalid=[1])


@pytest.mark.parametrize(
    "bounds, valid, invalid",
    [
        ({"minimum": 0, "maximum": 100}, [0, 7, 99, 100], [-1, 101, 1000]),
        ({"minimum": -273, "maximum": -3}, [-273, -100, -3], [-274, -2, 0, 5]),
        ({"exclusiveMinimum": 0, "exclusiveMaximum": 10}, [1, 9], [0, 10]),
        ({"minimum": 1.5, "maximum": 3.5}, [2, 3], [1, 4]),
        ({"minimum": 1000}, [1000, 10**15], [999, -1000]),
        ({"maximum": -1000}, [-1000, -10**15], [-999, 0]),
        ({"minimum": 37, "maximum": 512}, [37, 99, 100, 499, 509, 512], [36, 513, 600, 1000]),
        ({"$schema": "http://json-schema.org/draft-04/schema#", "minimum": 0, "exclusiveMinimum": True,
          "maximum": 5}, [1, 5], [0, 6]),
    ],
)
def test_integer_bounds_are_exact(bounds, valid, invalid):
    check({"type": "integer", **bounds}, valid=valid, invalid=invalid)


def test_integer_bounds_exhaustively():
    schema = {"type": "integer", "minimum": -57, "maximum": 231}
    grammar = schema_to_gbnf(schema)
    for v in range(-300, 300):
        assert accepts(grammar, str(v)) == (-57 <= v <= 231), v


@pytest.mark.parametrize(
    "bounds, valid, invalid",
    [
        ({"minimum": 0, "maximum": 1}, [0, 0.5, 1, 1.0, 0.999], [-0.1, 1.01, 2]),
        ({"exclusiveMinimum": 0, "maximum": 2.5}, [0.001, 2.5, 1.25], [0, 0.0, 2.51, -1]),
        ({"minimum": -90, "maximum": 90}, [-90, -45.5, 0, 89.999, 90], [-90.01, 90.5, 180]),
        ({"minimum": 0.25, "exclusiveMaximum": 0.5}, [0.25, 0.3, 0.4999], [0.2, 0.5, 0.75]),
        ({"minimum": 10}, [10, 10.5, 1e6], [9.99, -10]),
    ],
)
def test_number_bounds_are_exact(bounds, valid, invalid):
    check({"type": "number", **bounds}, valid=valid, invalid=invalid)


def test_any_of_one_of():
    schema = {"anyOf": [{"type": "string", "maxLength": 2}, {"type": "integer", "minimum": 0}]}
    check(schema, valid=["ab", 5], invalid=["abc", -1, None])
    check({"oneOf": [{"type": "boolean"}, {"type": "null"}]}, valid=[True, None], invalid=[0])
    # siblings apply to every branch
    check({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False,
           "anyOf": [{"required": ["a"]}, {"properties": {"a": {"minimum": 5}}}]},
          valid=[{"a": 1}, {}, {"a": 7}], invalid=[{"a": "x"}])


def test_all_of_merges_objects():
    schema = {"allOf": [
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        {"properties": {"b": {"type": "integer", "minimum": 0}, "a": {"maxLength": 3}}, "required": ["b"]},
    ]}
    check(schema, valid=[{"a": "x", "b": 1}, {"a": "xyz", "b": 0, "c": None}],
          invalid=[{"a": "x"}, {"a": "long", "b": 1}, {"a": "x", "b": -1}])
    check({"allOf": [{"type": "integer", "minimum": 0}, {"maximum": 5}]}, valid=[0, 5], invalid=[-1, 6])
    check({"allOf": [{"type": ["string", "integer"]}, {"type": "integer"}]}, valid=[1], invalid=["a"])


def test_all_of_a_pattern_and_a_length_pattern():
    """Claude Code's SendMessage.to (zod's ``.regex()`` beside ``.max(300)``): the length-only pattern merges as
    maxLength; two patterns that are not lengths are still refused."""
    one_line = {"type": "string", "allOf": [{"pattern": "^[^\\n\\r]*$"}, {"pattern": "^[\\s\\S]{0,5}$"}]}
    check(one_line, valid=["", "main", "a b c"], invalid=["a\nb", "sixsix", "x\r"])
    check({"allOf": [{"type": "string", "pattern": "^[\\s\\S]{2,}$"}, {"pattern": "^a+$"}]},
          valid=["aa", "aaaa"], invalid=["a", "ab"])
    with pytest.raises(SchemaError) as err:
        schema_to_gbnf({"allOf": [{"type": "string", "pattern": "^a"}, {"pattern": "b$"}]})
    assert err.value.keyword == "pattern"


def test_refs_defs_and_recursion():
    schema = {
        "$defs": {"pos": {"type": "integer", "minimum": 1}, "tree": {
            "type": "object", "properties": {"v": {"$ref": "#/$defs/pos"},
                                             "kids": {"type": "array", "items": {"$ref": "#/$defs/tree"}}},
            "required": ["v"], "additionalProperties": False}},
        "$ref": "#/$defs/tree",
    }
    check(schema, valid=[{"v": 1}, {"v": 2, "kids": [{"v": 3, "kids": [{"v": 4}]}, {"v": 5}]}],
          invalid=[{"v": 0}, {"v": 1, "kids": [{"v": 0}]}, {"kids": []}])
    check({"definitions": {"s": {"type": "string"}}, "type": "array", "items": {"$ref": "#/definitions/s"}},
          valid=[["a"]], invalid=[[1]])
    # a reference to the root
    check({"type": "object", "properties": {"next": {"$ref": "#"}}, "additionalProperties": False},
          valid=[{}, {"next": {"next": {}}}], invalid=[{"next": 1}])
    # $ref with sibling keywords (2019-09+)
    check({"$defs": {"n": {"type": "integer"}}, "$ref": "#/$defs/n", "minimum": 3}, valid=[3], invalid=[2])


def test_false_subschemas_remove_what_they_forbid():
    check({"type": "object", "properties": {"a": False, "b": {"type": "integer"}}, "additionalProperties": False},
          valid=[{}, {"b": 1}], invalid=[{"a": 1}])
    check({"anyOf": [False, {"type": "null"}]}, valid=[None], invalid=[1])


def test_relaxed_unique_items_is_a_documented_superset():
    grammar = schema_to_gbnf({"type": "array", "items": {"type": "integer"}, "uniqueItems": True})
    assert accepts(grammar, "[1, 2]") and accepts(grammar, "[1, 1]")


def test_deterministic_readable_deduplicated_and_memoised():
    schema = {"type": "object", "properties": {
        "location": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                     "additionalProperties": False},
        "unit": {"enum": ["c", "f"]}, "items": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        "other_unit": {"enum": ["c", "f"]}}, "additionalProperties": False}
    grammar = schema_to_gbnf(schema)
    import copy

    from oaiproxy.grammar import converter
    converter._schema_to_gbnf_cached.cache_clear()
    again = schema_to_gbnf(copy.deepcopy(schema))
    assert grammar == again
    names = [line.split(" ::= ")[0] for line in grammar.splitlines()]
    assert names[0] == "root" and len(names) == len(set(names))
    for expected in ("location", "location-kv", "location-city-kv", "unit", "items", "items-item"):
        assert expected in names, (expected, names)
    assert "other-unit" not in names  # same body as `unit`: reused
    assert "ws" in names and names.count("string") == 1
    before = converter._schema_to_gbnf_cached.cache_info().hits
    schema_to_gbnf(schema)
    assert converter._schema_to_gbnf_cached.cache_info().hits == before + 1


def test_grammars_stay_linear_in_size():
    import time

    enum = {"enum": [f"value number {i}" for i in range(1000)]}
    t = time.perf_counter()
    assert len(schema_to_gbnf(enum)) < 40_000
    wide = {"type": "integer", "minimum": -10**30, "maximum": 10**30 - 7}
    assert len(schema_to_gbnf(wide)) < 3_000
    deep: dict = {"type": "integer"}
    for _ in range(30):
        deep = {"type": "object", "properties": {"x": deep}, "required": ["x"], "additionalProperties": False}
    assert len(schema_to_gbnf(deep)) < 5_000
    big = {"type": "string", "maxLength": 5000}
    grammar = schema_to_gbnf(big)
    assert accepts(grammar, '"' + "a" * 5000 + '"') and not accepts(grammar, '"' + "a" * 5001 + '"')
    assert "{5000}" not in grammar and "{0,5000}" not in grammar
    assert time.perf_counter() - t < 10
