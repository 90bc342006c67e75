"""The README's dialect table is the one scripts/dialect_table.py writes from the registry."""

from __future__ import annotations

import subprocess
import sys

from tests._processes import REPO


def test_readme_dialect_table_is_current() -> None:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "dialect_table.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
