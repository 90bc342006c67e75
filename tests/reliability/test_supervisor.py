"""The llama-server supervisor's restart policy, driven by a stand-in binary that crashes on cue.

The real llama-server is killed in tests/reliability/test_faults.py; here a tiny
program that serves /health and then exits lets the give-up bound be checked in
seconds rather than minutes of real crashes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from oaiproxy.runtime.llama_server import ManagedServer, ServerOptions
from tests._processes import write_stand_in

CRASHER = """
import time
serve_health_in_background()
print("stand-in llama-server up", flush=True)
time.sleep({lifetime})
print("stand-in llama-server crashing", flush=True)
sys.exit(3)
"""


def make_binary(tmp_path: Path, lifetime: float) -> Path:
    return write_stand_in(tmp_path, CRASHER.format(lifetime=lifetime))


async def test_restarts_then_gives_up(tmp_path: Path) -> None:
    options = ServerOptions(binary=make_binary(tmp_path, 0.3), model=tmp_path / "m.gguf", max_crashes=2,
                            first_backoff=0.05, startup_timeout=30)
    server = ManagedServer(options, progress=False)
    await server.start()
    assert server.state == "ready"
    states = set()
    for _ in range(300):
        states.add(server.state)
        if server.state == "failed":
            break
        await asyncio.sleep(0.05)
    try:
        assert "restarting" in states
        assert server.state == "failed"
        assert "crashed 2 times" in server.last_error and "giving up" in server.last_error
        assert "exited with code 3" in server.last_error
    finally:
        await server.stop()
    assert server.state == "stopped"


async def test_restart_recovers(tmp_path: Path) -> None:
    options = ServerOptions(binary=make_binary(tmp_path, 0.5), model=tmp_path / "m.gguf", max_crashes=5,
                            first_backoff=0.05, startup_timeout=30)
    server = ManagedServer(options, progress=False)
    await server.start()
    first_pid = server.pid
    try:
        for _ in range(200):
            if server.pid != first_pid and server.state == "ready":
                break
            await asyncio.sleep(0.05)
        assert server.pid != first_pid and server.state == "ready"
        assert len(server.restarts) >= 1
    finally:
        await server.stop()


async def test_gives_up_at_the_fifth_crash_as_the_readme_says(tmp_path: Path) -> None:
    """README: "After 5 crashes within 5 minutes it gives up" — with the defaults, 4 restarts, then failed."""
    defaults = ServerOptions(binary=Path("x"), model=Path("m"))
    assert (defaults.max_crashes, defaults.restart_window) == (5, 300.0)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "After 5 crashes within 5 minutes it gives up" in readme
    options = ServerOptions(binary=make_binary(tmp_path, 0.2), model=tmp_path / "m.gguf", first_backoff=0.01,
                            startup_timeout=30)
    server = ManagedServer(options, progress=False)
    await server.start()
    pids = {server.pid}
    try:
        for _ in range(3000):  # up to 60 s: five short-lived processes on a loaded machine
            pids.add(server.pid)
            if server.state == "failed":
                break
            await asyncio.sleep(0.02)
        assert server.state == "failed", server.last_error
        assert len(pids) == 5  # the first start and 4 restarts; the 5th exit is not restarted
        assert server.last_error.startswith("llama-server crashed 5 times in 300 s; giving up")
    finally:
        await server.stop()
