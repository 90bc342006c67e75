"""A real PostgreSQL server for the tests: a throw-away cluster in a temporary folder, on a Unix socket only.

The binaries are the Debian ``postgresql`` package's (``make setup`` installs it when it is missing);
``$OAIPROXY_PG_BIN`` names another folder of them. PostgreSQL refuses to run as root, and CI runs as root:
then initdb and the server run as the package's ``postgres`` user (``subprocess``'s ``user=``, set in the
child itself, so the parent-death signal of :func:`tests._processes.die_with_parent_thread` still holds
and a run ended by ``os._exit`` leaves no server behind). The server is the child itself (no pg_ctl, which
would daemonize it), listens on no TCP port, and runs with fsync off: nothing here has to survive a crash.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests._processes import die_with_parent_thread, free_port, log_tail

#: the superuser initdb makes (trust authentication on the socket: no password)
SUPERUSER = "postgres"


def find_bin_dir() -> Path:
    """The folder of ``initdb`` and ``postgres``; an AssertionError saying what to run when there is none."""
    candidates: list[Path] = []
    if os.environ.get("OAIPROXY_PG_BIN"):
        candidates.append(Path(os.environ["OAIPROXY_PG_BIN"]))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                         if p.parent.name.isdigit() else 0, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise AssertionError("PostgreSQL server binaries (initdb, postgres) not found in $OAIPROXY_PG_BIN, "
                         "/usr/lib/postgresql/*/bin or PATH: run `make setup`, which installs the Debian "
                         "postgresql package (after `rm .cache/postgresql/.done` if it ran before)")


def _run_as() -> dict[str, Any]:
    """``subprocess`` arguments that drop root to the ``postgres`` user (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise AssertionError("running as root, PostgreSQL needs an unprivileged user and there is no "
                             "`postgres` user: run `make setup` (the Debian postgresql package makes it)") from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


class PostgresServer:
    """One cluster: :meth:`start` it, :meth:`url` for a database on it, :meth:`stop` (fast shutdown), start again."""

    def __init__(self) -> None:
        self.bin = find_bin_dir()
        self.port = free_port()  # only names the socket file (.s.PGSQL.<port>): no TCP listener
        self.dir = Path(tempfile.mkdtemp(prefix="oaiproxy-pg-"))  # short: a socket path has ~107 bytes
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as = _run_as()
        self._created = 0
        if self._as:
            os.chown(self.dir, self._as["user"], self._as["group"])
        init = subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                               "-E", "UTF8", "--no-sync", "--no-instructions"],
                              stdin=subprocess.DEVNULL, capture_output=True, cwd=self.dir, timeout=120, **self._as)
        if init.returncode != 0:
            self.remove()
            raise AssertionError(f"initdb failed ({init.returncode}): {init.stderr.decode(errors='replace')}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@/{database}?host={self.dir}&port={self.port}"

    def start(self, timeout: float = 60) -> None:
        """Start the server and return once it accepts connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-k", str(self.dir), "-p", str(self.port),
             "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=60"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
            preexec_fn=die_with_parent_thread, **self._as)
        log.close()
        socket = self.dir / f".s.PGSQL.{self.port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"postgres exited with {self.proc.returncode}:\n{log_tail(self.log_path)}")
            if socket.exists() and self._ready():
                return
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"postgres not ready within {timeout:.0f} s:\n{log_tail(self.log_path)}")

    def _ready(self) -> bool:
        ready = self.bin / "pg_isready"
        if not ready.is_file():
            return True
        return subprocess.run([str(ready), "-q", "-h", str(self.dir), "-p", str(self.port), "-U", SUPERUSER],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=10).returncode == 0

    def stop(self, timeout: float = 30) -> None:
        """Fast shutdown (SIGINT: open connections are ended, as when a database server goes away)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database on the running server (``name``: else one not used before); its URL."""
        if name is None:
            self._created += 1
            name = f"test{self._created}"
        psql = self.bin / "psql"
        done = subprocess.run([str(psql), "-q", "-h", str(self.dir), "-p", str(self.port), "-U", SUPERUSER,
                               "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"'],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        assert done.returncode == 0, f"CREATE DATABASE {name}: {done.stderr.decode(errors='replace')}"
        return self.url(name)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started server, stopped and its folder removed afterwards (whatever the test did to it)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()
