"""``scripts/bench --quick``: every section prints its table with numbers and the JSON file is valid."""

from __future__ import annotations

import json
from pathlib import Path

from tests.scripts._smoke import is_number, run_script, tables


def test_bench_quick_prints_tables_and_writes_json(tmp_path: Path, llama_server_bin: str, default_model_path: Path,
                                                   templates_dir: Path) -> None:
    out = tmp_path / "bench.json"
    stdout = run_script("bench", "--quick", "--out", str(out))

    printed = tables(stdout)
    by_number = {title.split(".")[0]: rows for title, rows in printed.items()}
    assert set(by_number) == {"1", "2", "3", "4", "4b", "5"}, f"sections printed: {list(printed)}"
    for number, rows in by_number.items():
        assert rows, f"section {number} printed an empty table"

    overhead = by_number["1"]
    assert {r["clients"] for r in overhead} == {"1", "2"}
    assert all(is_number(r["ratio p50"]) and is_number(r["proxy p50 ms"]) for r in overhead), overhead
    assert all(is_number(r["first token +ms p50"]) for r in overhead if r["stream"] == "True"), overhead
    decode = by_number["2"]
    assert all(is_number(r["unconstrained tok/s"]) and is_number(r["oaiproxy tok/s"]) for r in decode), decode
    assert all(is_number(r["oaiproxy"]) and int(r["oaiproxy"]) > 0 for r in by_number["3"]), by_number["3"]
    assert all(is_number(r["p50 ms"]) for r in by_number["4"]), by_number["4"]
    assert all(is_number(r["requests/s"]) and float(r["requests/s"]) > 0 for r in by_number["5"]), by_number["5"]
    plan = {r["dialect"]: r for r in by_number["4b"]}
    assert all(is_number(r["cold"]) and is_number(r["cached"]) for r in plan.values()), plan
    # generic splits its plan as the native dialects do, so the plan cache keeps both
    assert plan["hermes"]["cache bypassed"] == "False" and plan["generic"]["cache bypassed"] == "False"
    ceiling = {r["request"]: r for r in by_number["5"]}
    # the proxy's own /metrics says the repeated 128-tool list was served from the plan cache
    assert float(ceiling["128 tools, same list (cache hits)"]["plan cache hit ratio"]) == 1.0, ceiling
    assert float(ceiling["128 tools, changed each request (misses)"]["plan cache hit ratio"]) == 0.0, ceiling

    data = json.loads(out.read_text())
    assert data["config"]["quick"] is True
    assert {"overhead", "decode", "schema", "plan", "ceiling"} <= set(data)
    assert len(data["overhead"]["rows"]) == len(overhead)
    assert data["schema"]["schemas"] > 0
