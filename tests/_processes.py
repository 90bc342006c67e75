"""Child processes for the tests and the developer scripts: llama-server, oaiproxy, stand-ins.

One place for what every harness needs and got subtly wrong at least once:

* a child logs to a *file*, never to a pipe: a pipe nobody reads fills at ~64 KiB, and then
  the child blocks in its next log write while its ``/health`` still answers ok;
* a child dies with the thread that started it (Linux parent-death signal), because
  pytest-timeout's thread method ends a wedged run with ``os._exit``, which runs no teardown;
* waiting for ``/health`` stops as soon as the child exits, with the tail of its log.

It lives under ``tests/`` rather than in the package: users never start a llama-server
through it (the proxy's own supervisor, :mod:`oaiproxy.runtime.llama_server`, does that).
``scripts/_benchlib.py`` and ``scripts/soak`` put the repository root on ``sys.path`` and import
it from here, so the benchmark, the soak and the suite start their processes the same way.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from oaiproxy.runtime.llama_server import free_loopback_port

REPO = Path(__file__).resolve().parent.parent

free_port = free_loopback_port


def die_with_parent_thread() -> None:
    """In the child before exec: SIGKILL it when the thread that started it ends.

    pytest-timeout's thread method ends a wedged run with ``os._exit``, which runs no fixture
    teardown: without this, proxies and llama-servers started by the suite would outlive it.
    (The signal follows the *thread* that forked, so start children from the thread that owns them.)
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except OSError:
            pass


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


def wait_for_health(url: str, proc: subprocess.Popen[bytes], timeout: float, log_path: Path | None = None) -> bool:
    """Poll ``url/health`` until it answers 200 (True) or ``timeout`` passes (False).

    Raises RuntimeError as soon as ``proc`` exits, with the tail of its log file when there is one.
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


class Child:
    """A child process on a loopback port with its log in a temporary file.

    ``what`` names it in errors ("llama-server exited with 1: ..."). The log is kept after
    :meth:`stop` (tests read it then) unless ``keep_log=False`` (the scripts' many runs).
    """

    what = "child"

    def __init__(self, cmd: Sequence[str], *, port: int, env: dict[str, str] | None = None,
                 cwd: Path | None = None, log_dir: Path | None = None, keep_log: bool = True,
                 new_session: bool = False) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.keep_log = keep_log
        fd, name = tempfile.mkstemp(prefix=f"{self.what}-", suffix=".log", dir=log_dir)
        self.log_path = Path(name)
        self._log = os.fdopen(fd, "wb")
        self.proc: subprocess.Popen[bytes] = subprocess.Popen(
            list(cmd), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **env} if env else None, cwd=cwd, start_new_session=new_session,
            preexec_fn=die_with_parent_thread,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 180) -> None:
        """Return once ``/health`` answers 200; otherwise stop the child and raise RuntimeError."""
        try:
            healthy = wait_for_health(self.url, self.proc, timeout, self.log_path)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{self.what} {exc}") from None
        if not healthy:
            self.stop()
            raise RuntimeError(f"{self.what} not healthy within {timeout:.0f} s:\n{log_tail(self.log_path)}")

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` s; the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if not self.keep_log:
            self.log_path.unlink(missing_ok=True)
        return self.proc.returncode

    def __enter__(self) -> Child:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def llama_server_command(binary: str | Path, model: Path, port: int, *, ctx_size: int = 4096, parallel: int = 2,
                         threads: int | None = None, extra: Sequence[str] = ()) -> list[str]:
    """llama-server on one model, loopback only, without its web UI."""
    cmd = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
           "-c", str(ctx_size), "-np", str(parallel), "--no-webui"]
    if threads:
        cmd += ["-t", str(threads)]
    return [*cmd, *extra]


class LlamaServer(Child):
    """A real llama-server on one model, healthy when the constructor returns."""

    what = "llama-server"

    def __init__(self, binary: str | Path, model: Path, *, extra: Sequence[str] | None = None, ctx_size: int = 4096,
                 parallel: int = 2, threads: int | None = 2, timeout: float = 120, keep_log: bool = True) -> None:
        self.model = model
        port = free_port()
        super().__init__(llama_server_command(binary, model, port, ctx_size=ctx_size, parallel=parallel,
                                              threads=threads, extra=extra or ()),
                         port=port, keep_log=keep_log, new_session=True)
        self.wait_healthy(timeout)

    def post(self, path: str, body: dict[str, Any], timeout: float = 120) -> Any:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{path} -> {e.code}: {e.read().decode(errors='replace')}") from None


#: where the proxies started here keep their default database: a folder of this run, not the user's
#: ~/.local/share/oaiproxy (an explicit --data-dir, --db-url or env entry still wins)
DATA_DIR = tempfile.mkdtemp(prefix="oaiproxy-test-data-")


class ProxyProcess(Child):
    """``python -m oaiproxy`` as a user runs it, on a free port (healthy on return unless ``wait=False``)."""

    what = "oaiproxy"

    def __init__(self, args: Sequence[str], *, env: dict[str, str] | None = None, wait: bool = True,
                 log_dir: Path | None = None, timeout: float = 180, keep_log: bool = True) -> None:
        port = free_port()
        env = {"OAIPROXY_DATA_DIR": os.environ.get("OAIPROXY_DATA_DIR", DATA_DIR), **(env or {})}
        super().__init__([sys.executable, "-m", "oaiproxy", "--port", str(port), *args], port=port, env=env,
                         cwd=REPO, log_dir=log_dir, keep_log=keep_log)
        self.base_url = self.url + "/v1"
        if wait:
            self.wait_healthy(timeout)

    def children(self) -> list[int]:
        """Pids whose parent is the proxy (its llama-servers)."""
        return children_of(self.proc.pid)

    def stop(self, timeout: float = 30) -> int:
        return super().stop(timeout)


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (Linux ``/proc``)."""
    pids = []
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = path.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            pids.append(int(path.parent.name))
    return pids


def pid_alive(pid: int) -> bool:
    """True while a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


#: the start of every stand-in: its command-line options and a /health (``{}``) served from a thread
STAND_IN_PREAMBLE = '''\
import http.server, sys, threading
ARGS = sys.argv[1:]
def option(name, default=None):
    return ARGS[ARGS.index(name) + 1] if name in ARGS else default
PORT = int(option("--port"))
MODEL = option("--model")
class HealthHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *a): pass
def serve_health_in_background():
    srv = http.server.HTTPServer(("127.0.0.1", PORT), HealthHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
'''


def write_stand_in(directory: Path, body: str, *, name: str = "llama-server") -> Path:
    """An executable Python program standing in for llama-server: :data:`STAND_IN_PREAMBLE`, then ``body``.

    The proxy is pointed at it with ``--server-bin`` (or ``ServerOptions(binary=...)``); ``body``
    can use ``ARGS``, ``option(name)``, ``PORT``, ``MODEL`` and ``serve_health_in_background()``.
    """
    path = directory / name
    path.write_text(f"#!{sys.executable}\n{STAND_IN_PREAMBLE}{body}", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path
