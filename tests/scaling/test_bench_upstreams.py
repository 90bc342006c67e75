"""scripts/bench_upstreams.py runs end to end on a small setting and prints its table of ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_benchmark_prints_ratios_for_each_pool_size(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "scripts/bench_upstreams.py", "--upstreams", "1,2", "--seconds", "1",
                             "--tokens", "8", "--delay", "0.01", "--json", str(out)],
                            capture_output=True, text=True, cwd=REPO, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "req/s ÷ 1 upstream" in result.stdout and "noisy" in result.stdout
    results = json.loads(out.read_text())["results"]
    assert [r["upstreams"] for r in results] == [1, 2]
    assert all(r["requests"] > 0 and r["failures"] == 0 for r in results)
    assert all(n > 0 for n in results[1]["per_upstream"])  # both stubs served
