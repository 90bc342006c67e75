"""``python -m oaiproxy.grammar``: file or stdin in, grammar out; a bad schema is one line and exit 2."""

import subprocess
import sys

from oaiproxy.grammar import schema_to_gbnf
from tests.gbnf_oracle import accepts
from tests.grammar.helpers import CORPUS_DIR


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "oaiproxy.grammar", *args], input=stdin, capture_output=True,
                          text=True, timeout=60)


def test_file_and_stdin_give_the_same_grammar():
    path = CORPUS_DIR / "get_weather.json"
    from_file = run(str(path))
    from_stdin = run("-", stdin=path.read_text())
    assert from_file.returncode == 0 and from_stdin.returncode == 0, from_file.stderr
    assert from_file.stdout == from_stdin.stdout
    assert from_file.stdout.startswith("root ::= ")
    import json

    assert from_file.stdout == schema_to_gbnf(json.loads(path.read_text()))
    assert accepts(from_file.stdout, '{"location": "Paris", "unit": "celsius"}')


def test_bad_schema_is_one_line_and_exit_2():
    result = run("-", stdin='{"type": "object", "properties": {"a": {"type": "string", "pattern": "(?=x)"}}}')
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "pattern" in lines[0] and "/properties/a/pattern" in lines[0]


def test_not_json_and_missing_file():
    assert run("-", stdin="{nope").returncode == 2
    missing = run("/nonexistent/schema.json")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
