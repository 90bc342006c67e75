"""Tool descriptions as TypeScript for the generic scheme."""

from __future__ import annotations

from oaiproxy.conversation.model import ToolSpec
from oaiproxy.dialects.generic import example_arguments
from oaiproxy.dialects.typescript import ts_signature, ts_type


def test_types_cover_the_common_schema_shapes():
    assert ts_type({"type": "string"}) == "string"
    assert ts_type({"type": "integer"}) == "number"
    assert ts_type({"enum": ["a", 1]}) == '"a" | 1'
    assert ts_type({"type": ["string", "null"]}) == "string | null"
    assert ts_type({"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "boolean"}]}}) \
        == "(string | boolean)[]"
    assert ts_type({"type": "object", "additionalProperties": {"type": "number"}}) == "{ [key: string]: number }"
    assert ts_type({"const": "x"}) == '"x"'
    assert ts_type({}) == "any"


def test_signature_marks_optional_parameters_and_keeps_descriptions():
    spec = ToolSpec("get_weather", "Get the weather", {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City\nname"}, "days": {"type": "integer"},
                       "odd-key": {"type": "boolean"}},
        "required": ["city"]})
    text = ts_signature(spec)
    assert text.startswith("// Get the weather\nfunction get_weather(args: {")
    assert "  // City name\n  city: string;" in text
    assert "  days?: number;" in text and '  "odd-key"?: boolean;' in text
    assert text.endswith("}): any;")


def test_example_arguments_show_required_keys_only():
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]},
                                               "n": {"type": "integer"}}, "required": ["city", "unit"]}
    assert example_arguments(schema) == {"city": "text", "unit": "c"}  # a typed value, never "..."
