"""The proxy and its database at start-up: no database, no proxy (and no model loaded first)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_proxy_does_not_start_without_its_database(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = subprocess.run([sys.executable, "-m", "oaiproxy", "--port", "0", "--data-dir", str(blocker / "d")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "--db-url: cannot create the folder" in result.stderr and "Traceback" not in result.stderr
