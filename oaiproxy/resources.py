"""Locate the data files (GBNF fragments, prompt templates) shipped with oaiproxy.

The files live in the repository's top-level ``grammars/`` and ``templates/``
folders. A wheel carries them inside the package as ``oaiproxy/_data/...``;
a source checkout or an editable install reads them from the repository.
Looking in both places keeps one copy of each file and lets either layout work
from any working directory.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def data_dir(kind: str) -> Path:
    """Return the folder holding the ``kind`` data files ("grammars" or "templates")."""
    if kind not in ("grammars", "templates"):
        raise ValueError(f"unknown data folder {kind!r}")
    for candidate in (_PACKAGE_DIR / "_data" / kind, _PACKAGE_DIR.parent / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"oaiproxy's {kind}/ folder is missing: looked in {_PACKAGE_DIR / '_data' / kind} "
        f"and {_PACKAGE_DIR.parent / kind}; reinstall the package"
    )


def read_text(kind: str, name: str) -> str:
    """Read one data file as text, e.g. ``read_text("templates", "default.jinja")``."""
    path = data_dir(kind) / name
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"oaiproxy data file {path} is missing; reinstall the package") from None
