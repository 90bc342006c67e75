"""The oracle itself: GBNF syntax it must read, and membership it must decide."""

import pytest

from tests.gbnf_oracle import GrammarSyntaxError, accepts, parse_grammar


@pytest.mark.parametrize(
    "grammar, yes, no",
    [
        ('root ::= "ab" "c"', ["abc"], ["ab", "abcc", ""]),
        ('root ::= [a-c]+', ["a", "cab"], ["", "d"]),
        ('root ::= [^a-c\\n]', ["d", "é"], ["a", "\n"]),
        ('root ::= "x"{2,3}', ["xx", "xxx"], ["x", "xxxx"]),
        ('root ::= "x"{2}', ["xx"], ["x", "xxx"]),
        ('root ::= "x"{2,}', ["xx", "xxxxxx"], ["x"]),
        ('root ::= "x"{0,2} "y"', ["y", "xxy"], ["xxxy"]),
        ('root ::= ("a" | "b" "c")* "d"?', ["", "abcd", "bcbc", "d"], ["c", "dd"]),
        ('root ::= .', ["\n", "z"], ["", "zz"]),
        ('root ::= "\\x41\\u00e9\\U0001F600\\t\\"\\\\"', ["Aé😀\t\"\\"], ["A"]),
        ('root ::= [\\]\\-\\[]', ["]", "-", "["], ["a"]),
        ('root ::= [a-]', ["a", "-"], ["b"]),
        ("# comment\nroot ::= a b # trailing\na ::= \"a\"\nb ::= \"b\" |\n  \"c\"\n", ["ab", "ac"], ["a"]),
        ('root ::= (\n  "a"\n  | "b"\n)', ["a", "b"], ["ab"]),
        ('root ::= "(" root ")" | ""', ["", "()", "(())"], ["(()", ")("]),
    ],
)
def test_membership(grammar, yes, no):
    for s in yes:
        assert accepts(grammar, s), (grammar, s)
    for s in no:
        assert not accepts(grammar, s), (grammar, s)


def test_ambiguous_grammar_is_fine():
    g = 'root ::= a* a*\na ::= "x" | "xx" | ""'
    assert accepts(g, "x" * 30)
    assert not accepts(g, "x" * 30 + "y")


def test_other_root_rule():
    g = 'root ::= "a"\nother ::= "b"'
    assert accepts(g, "b", root="other")
    assert not accepts(g, "a", root="other")


@pytest.mark.parametrize(
    "bad",
    [
        'root ::= missing',
        'root ::= "unterminated',
        'root ::= [abc',
        'root ::= "\\q"',
        'root ::= *',
        'root "a"',
        'root ::= "a"{3,1}',
        'root ::= ("a"',
    ],
)
def test_syntax_errors(bad):
    with pytest.raises(GrammarSyntaxError):
        parse_grammar(bad)


def test_left_recursion_is_reported():
    with pytest.raises(GrammarSyntaxError):
        accepts('root ::= root "a" | "a"', "aa")
