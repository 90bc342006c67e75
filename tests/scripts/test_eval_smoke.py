"""``scripts/eval --quick``: the per-category table for both systems, and valid JSON with every outcome."""

from __future__ import annotations

import json
from pathlib import Path

from tests.scripts._smoke import is_number, run_script, tables


def test_eval_quick_prints_table_and_writes_json(tmp_path: Path, llama_server_bin: str, default_model_path: Path,
                                                 templates_dir: Path) -> None:
    out = tmp_path / "eval.json"
    # two of the quick cases (one call expected, one where no tool fits) keep this CI-sized
    stdout = run_script("eval", "--quick", "--category", "single", "--category", "irrelevant",
                        "--max-tokens", "48", "--no-progress", "--out", str(out))

    (rows,) = tables(stdout).values()
    assert {(r["system"], r["tool_choice"]) for r in rows} == {
        ("oaiproxy", "auto"), ("oaiproxy", "required"), ("llama-server", "auto"), ("llama-server", "required")}
    for r in rows:
        assert is_number(r["n"]) and int(r["n"]) >= 1, r
        assert is_number(r["with call"]) and 0 <= float(r["with call"]) <= 1, r
        assert is_number(r["errors"]) and is_number(r["p50 s"]), r
    irrelevant = [r for r in rows if r["category"] == "irrelevant"]
    assert irrelevant and all(is_number(r["no call when none fits"]) for r in irrelevant), irrelevant
    single = [r for r in rows if r["category"] == "single"]
    assert single and all(is_number(r["exact"]) for r in single), single

    data = json.loads(out.read_text())
    assert data["config"]["cases"] == 2
    # 2 cases x 2 systems in auto, plus the expected-call case x 2 systems in required
    assert len(data["outcomes"]) == 6
    assert {o["system"] for o in data["outcomes"]} == {"oaiproxy", "llama-server"}
