"""conftest's unit-run guard: in a run without integration tests, a test that starts llama-server
fails with a message saying so, even when the test itself expected llama-server to fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests._processes import REPO

PROBE = '''
import subprocess

from oaiproxy.runtime.llama_server import find_server_binary


def test_starts_llama_server():
    result = subprocess.run([str(find_server_binary()), "--port", "1"], capture_output=True, text=True)
    assert result.returncode != 0  # "expected": the guard must fail this test anyway


def test_does_not():
    assert "oaiproxy-unit-guard-" in str(find_server_binary())  # the guard, not the shell's /nonexistent
'''


def test_a_test_that_starts_llama_server_in_a_unit_run_fails(tmp_path: Path) -> None:
    # the suite's own hooks, in a run of one probe module (so this run's guard is not touched)
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_collection_finish, pytest_runtest_makereport, pytest_unconfigure\n")
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OAIPROXY_LLAMA_SERVER": "/nonexistent/llama-server"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:langsmith_plugin",
               str(tmp_path)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode == 1 and "1 failed, 1 passed" in out, out
    assert "test_starts_llama_server started llama-server during its call but is not marked integration" in out, out
    assert "llama-server --port 1" in out  # the command line it tried
