"""The incremental JSON scanner: paths per character, syntax errors, streaming string decoding."""

from __future__ import annotations

import json

import pytest

from oaiproxy.dialects._jsonscan import JsonScanError, JsonScanner, StringDecoder

DOCS = [
    '{"name": "f", "arguments": {"a": [1, 2.5e3, -0], "b": {"c": null}, "d": true, "e": "x\\"y\\u00e9"}}',
    '[{"k": false}, [], {}, "s", 0]',
    '  {"a" : 1 ,"b":[ 1 , 2 ]}',
    '"just a string"',
    '{"emoji": "\\ud83d\\ude00", "nested": [[[]]]}',
]


def scan(text: str) -> tuple[dict, list]:
    scanner = JsonScanner()
    raw: dict = {}
    order = []
    for ch in text:
        path, completed = scanner.feed_char(ch)
        if path is not None:
            for k in range(len(path) + 1):
                raw.setdefault(path[:k], []).append(ch)
        order += completed
    scanner.finish()
    return {p: "".join(v) for p, v in raw.items()}, order


@pytest.mark.parametrize("doc", DOCS)
def test_raw_text_of_every_value_is_that_value(doc):
    raw, completed = scan(doc)
    assert json.loads(raw[()]) == json.loads(doc)
    assert completed[-1] == ()
    value = json.loads(doc)
    for path in completed:
        expected = value
        for key in path:
            expected = expected[key]
        assert json.loads(raw[path]) == expected, path


def test_root_number_ends_at_finish_or_first_other_character():
    scanner = JsonScanner()
    for ch in "12":
        scanner.feed_char(ch)
    assert scanner.finish() == [()]
    scanner = JsonScanner()
    scanner.feed_char("7")
    path, completed = scanner.feed_char(")")
    assert scanner.rejected and scanner.done and completed == [()] and path is None


@pytest.mark.parametrize("bad", ['{"a" 1}', "[1,]", '{"a": tru}', '{"a": 01}', "}", '{"a": "\\x"}', "[1 2]",
                                 '{"a": 1}}', '"tab\there"'])
def test_invalid_json_raises(bad):
    scanner = JsonScanner()
    with pytest.raises(JsonScanError):
        for ch in bad:
            scanner.feed_char(ch)
        scanner.finish()


def test_incomplete_json_raises_at_finish():
    scanner = JsonScanner()
    for ch in '{"a": [1':
        scanner.feed_char(ch)
    with pytest.raises(JsonScanError):
        scanner.finish()


@pytest.mark.parametrize("inner", ['plain', 'tab\\t quote\\" slash\\/', 'caf\\u00e9', 'smile \\ud83d\\ude00 end', ''])
def test_string_decoder_never_splits_an_escape(inner):
    expected = json.loads('"' + inner + '"')
    for step in (1, 2, 3, 5):
        decoder = StringDecoder()
        out = "".join(decoder.feed(inner[i:i + step]) for i in range(0, len(inner), step)) + decoder.finish()
        assert out == expected
