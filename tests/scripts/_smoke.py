"""Run a script in ``scripts/`` as a user would and pick its printed tables apart."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"^-?\d+(\.\d+)?(e[-+]\d+)?$")


def run_script(name: str, *args: str, timeout: float = 280) -> str:
    """The script's stdout; fails the test with its stderr tail when it does not exit 0."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"scripts/{name} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc.stdout


def tables(stdout: str) -> dict[str, list[dict[str, str]]]:
    """Markdown tables printed under ``### title`` headings: title -> rows as {header: cell}."""
    found: dict[str, list[dict[str, str]]] = {}
    title = None
    headers: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith("### "):
            title, headers = line[4:].strip(), None
            found[title] = []
        elif line.startswith("|") and title is not None:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if headers is None:
                headers = cells
            elif not all(set(c) <= {"-"} for c in cells):
                assert len(cells) == len(headers), f"ragged row in {title!r}: {line}"
                found[title].append(dict(zip(headers, cells, strict=True)))
    return found


def is_number(cell: str) -> bool:
    return bool(NUMBER.match(cell))
