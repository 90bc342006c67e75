"""xml_values.text_until: the free text of a raw XML value admits exactly the strings without its end text."""

from __future__ import annotations

import random

import pytest

from oaiproxy.dialects.xml_values import text_until
from oaiproxy.grammar import GrammarBuilder
from tests.gbnf_oracle import accepts


@pytest.mark.parametrize("end", ["\n</parameter>", "</arg_value>", "]]>", "]<]minimax[>[", "abab", "aab"])
def test_text_until_admits_exactly_the_texts_without_the_end(end: str) -> None:
    builder = GrammarBuilder()
    grammar = builder.to_gbnf(text_until(builder, end, "t"))
    rng = random.Random(end)
    alphabet = end + "xy"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        assert accepts(grammar, text) == (end not in text), repr(text)
