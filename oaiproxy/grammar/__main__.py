"""``python -m oaiproxy.grammar SCHEMA_FILE`` (``-`` for stdin): print the GBNF grammar for a JSON Schema.

A bad schema prints one line naming the keyword and JSON pointer and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from oaiproxy.grammar.converter import GrammarBuilder, SchemaError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oaiproxy.grammar",
                                     description="Convert a JSON Schema to a llama.cpp GBNF grammar.")
    parser.add_argument("schema_file", help="JSON Schema file, or - for stdin")
    parser.add_argument("--no-additional-properties", action="store_true",
                        help="objects without additionalProperties admit no extra keys (OpenAI strict mode)")
    args = parser.parse_args(argv)
    try:
        if args.schema_file == "-":
            text = sys.stdin.read()
        else:
            with open(args.schema_file, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        print(f"error: cannot read {args.schema_file}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        schema = json.loads(text)
    except ValueError as e:
        print(f"error: {args.schema_file} is not JSON: {e}", file=sys.stderr)
        return 2
    try:
        builder = GrammarBuilder(additional_properties=not args.no_additional_properties)
        grammar = builder.to_gbnf(builder.add_schema(schema, "root"))
    except SchemaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(grammar)
    return 0


if __name__ == "__main__":
    sys.exit(main())
