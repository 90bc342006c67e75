"""The one-way flow of docs/architecture.md, checked on the imports: a stage never reaches back.

HTTP surface → conversation → dialect → prompt + grammar → llama-server → parser → response. A
module may import the stages after it, never one before: the grammar knows nothing of dialects,
no stage below the HTTP surfaces knows an API's wire types, and so on.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "oaiproxy"

#: stage (a folder or module of the package) -> the stages it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "grammar": ("api", "conversation", "dialects", "engine", "runtime", "server", "templating", "validation"),
    "templating": ("api", "conversation", "dialects", "engine", "grammar", "runtime", "server"),
    "conversation": ("api", "dialects", "engine", "runtime", "server", "templating"),
    "dialects": ("api", "engine", "runtime", "server"),
    "validation": ("api", "dialects", "engine", "runtime", "server"),
    "runtime": ("api", "conversation", "dialects", "engine", "grammar", "server", "templating", "validation"),
    "engine": ("api", "server", "server_tools"),
    # server-side tools (sources, executor, the loop) run on the engine; the API surfaces call them
    "server_tools": ("api", "server", "cli"),
    "api": ("server", "cli"),
    # counted and logged by every stage, so it knows none of them
    "metrics": ("api", "cli", "conversation", "dialects", "engine", "grammar", "runtime", "server", "server_tools",
                "settings", "store", "templating", "validation"),
}


def imported_stages(path: Path) -> set[str]:
    """The first component under ``oaiproxy.`` of every import in a file (module-level or not)."""
    stages: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "oaiproxy" and len(parts) > 1:
                stages.add(parts[1])
    return stages


def stage_files(stage: str) -> list[Path]:
    folder = PACKAGE / stage
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{stage}.py"]


@pytest.mark.parametrize("stage", sorted(FORBIDDEN))
def test_a_stage_never_imports_an_earlier_one(stage: str) -> None:
    files = stage_files(stage)
    assert files and all(f.is_file() for f in files), f"stage {stage!r} is not in the package any more"
    wrong = {f"{f.relative_to(PACKAGE.parent)} imports oaiproxy.{s}"
             for f in files for s in imported_stages(f) & set(FORBIDDEN[stage])}
    assert not wrong, sorted(wrong)


def test_the_check_sees_a_backward_import(tmp_path: Path) -> None:
    """The scanner itself: an import reaching back, even inside a function, is found."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from oaiproxy.api.chat.protocol import ChatCompletion\n"
                      "import oaiproxy.engine\nfrom oaiproxy import server\n")
    assert imported_stages(module) == {"api", "engine", "server"}
