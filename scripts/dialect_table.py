#!/usr/bin/env python3
"""The README's dialect table, written from the dialect registry: one row per format family (dialect module).

Each row names the family's styles, the format (the first line of the module's
docstring) and the real llama.cpp templates its styles declare in their
``samples`` — the templates the coverage test (tests/styles/test_template_coverage.py)
measures as covered, since that test requires every covered template to be
declared by the dialect covering it. So the table cannot drift from what is
tested: ``--check`` (run by the test suite) fails when README.md differs.

    python scripts/dialect_table.py            # print the table
    python scripts/dialect_table.py --write    # rewrite it in README.md
    python scripts/dialect_table.py --check    # exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from oaiproxy.dialects.registry import discover, fallback_style, sampled_styles  # noqa: E402

README = REPO / "README.md"
BEGIN = "<!-- dialect-table: written by scripts/dialect_table.py -->"
END = "<!-- /dialect-table -->"


def _summary(module_doc: str | None) -> str:
    first = (module_doc or "").strip().splitlines()[0] if module_doc else ""
    return first.replace("``", "`").replace("|", "\\|").rstrip(".")


def _template_name(filename: str) -> str:
    return "oaiproxy's default template" if filename == "default" else filename.removesuffix(".jinja")


def table() -> str:
    """The markdown table (between its markers)."""
    discover()
    families: dict[str, tuple[list[str], str, list[str]]] = {}
    for cls in sampled_styles():
        samples = cls.samples
        assert samples is not None
        module = sys.modules[cls.__module__]
        styles, summary, templates = families.setdefault(
            cls.__module__, ([], _summary(module.__doc__), []))
        styles.append(f"`{cls.name}`")
        for t in (*samples.templates, *samples.also_detected):
            if t not in templates and (cls is fallback_style() or t != "default"):
                templates.append(t)
    fallback = fallback_style().__module__
    rows = ["| styles | format | templates covered |", "|---|---|---|"]
    counted = 0
    for module, (styles, summary, templates) in sorted(families.items(), key=lambda kv: (kv[0] == fallback, kv[0])):
        if module == fallback:
            cell = "every template no other dialect claims, base models and models without a template included"
        else:
            counted += len(templates)
            cell = f"{len(templates)}: " + ", ".join(_template_name(t) for t in templates)
        rows.append(f"| {' / '.join(styles)} | {summary} | {cell} |")
    return "\n".join([BEGIN, *rows, "", f"{counted} of llama.cpp's templates speak a dialect of their own.", END])


def readme_with_table(text: str) -> str:
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + table() + text[stop:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="rewrite the table in README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md's table is out of date")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    if args.write:
        README.write_text(readme_with_table(text), encoding="utf-8")
    elif args.check:
        if readme_with_table(text) != text:
            print("README.md's dialect table is out of date: run python scripts/dialect_table.py --write",
                  file=sys.stderr)
            return 1
    else:
        print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
