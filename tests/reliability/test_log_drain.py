"""llama-server's log is always drained: a line over 64 KiB, a failing log handler, or a flood of log
must never leave the pipe unread — llama-server would block in its next log write, every slot
stopped, while ``/health`` still said ok.

The first two tests use a stand-in binary (it answers /health and writes exactly the log that
used to end the forwarder, then says it got to the end); the last ones run the real llama-server
with its most verbose log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest

from oaiproxy.runtime.llama_server import LOG_LINE_LIMIT, ManagedServer, ServerOptions
from tests._processes import LlamaServer, ProxyProcess, write_stand_in

# writes a 200 KiB line, then ~2 MiB of ordinary lines, then touches a file next to --model:
# with nobody reading its pipe it blocks after ~64 KiB and never gets there
FLOODER = """
import pathlib, time
done = pathlib.Path(MODEL).with_name("logged-everything")
serve_health_in_background()
out = sys.stdout.buffer
out.write(b"stand-in up\\n"); out.flush()
time.sleep(0.5)  # let the proxy see /health first
out.write(b"A" * (200 * 1024) + b"\\n")
for i in range(20000):
    out.write(b"log line %06d " % i + b"x" * 80 + b"\\n")
out.write(b"no newline at the end, then more: " + b"B" * (100 * 1024))
out.write(b"\\nstand-in logged everything\\n")
out.flush()
done.touch()
time.sleep(3600)
"""


def flooder(tmp_path: Path) -> Path:
    return write_stand_in(tmp_path, FLOODER)


async def run_flooder(tmp_path: Path) -> ManagedServer:
    server = ManagedServer(ServerOptions(binary=flooder(tmp_path), model=tmp_path / "m.gguf", startup_timeout=60),
                           progress=False)
    await server.start()
    done = tmp_path / "logged-everything"
    for _ in range(600):  # 60 s: the stand-in needs well under a second when its pipe is read
        if done.exists():
            break
        await asyncio.sleep(0.1)
    return server


async def test_a_line_over_64_kib_does_not_stop_the_draining(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="oaiproxy.llama_server.output")
    server = await run_flooder(tmp_path)
    try:
        assert (tmp_path / "logged-everything").exists(), \
            "the stand-in blocked writing its log: the pipe is not drained"
        for _ in range(100):  # the last line may still be on its way through the pipe
            if any(r.getMessage() == "stand-in logged everything" for r in caplog.records):
                break
            await asyncio.sleep(0.05)
        lines = [r.getMessage() for r in caplog.records if r.name == "oaiproxy.llama_server.output"]
        assert "stand-in logged everything" in lines
        long_line = next(line for line in lines if line.startswith("AAAA"))
        hidden = 200 * 1024 - LOG_LINE_LIMIT
        assert long_line == "A" * LOG_LINE_LIMIT + f" [... {hidden} more bytes of this line not shown]"
        assert sum(1 for line in lines if line.startswith("log line ")) == 20000
        assert all(len(line) < LOG_LINE_LIMIT + 100 for line in lines)
        assert not server._log_tasks[0].done(), "the log forwarder ended while llama-server runs"
        assert server.state == "ready"
    finally:
        await server.stop()


async def test_a_failing_log_handler_does_not_stop_the_draining(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    class Broken(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            raise RuntimeError("a broken log handler")

    output = logging.getLogger("oaiproxy.llama_server.output")
    caplog.set_level(logging.DEBUG, logger="oaiproxy.llama_server.output")
    broken = Broken()
    output.addFilter(broken)
    try:
        server = await run_flooder(tmp_path)
        try:
            assert (tmp_path / "logged-everything").exists(), "the stand-in blocked: the forwarder died"
            assert not server._log_tasks[0].done()
        finally:
            await server.stop()
    finally:
        output.removeFilter(broken)


@pytest.mark.integration
def test_test_fixture_llama_server_logging_verbosely_keeps_serving(llama_server_bin, default_model_path) -> None:
    """The suite's own `LlamaServer` (the `upstream` fixture): its log used to go to a pipe nobody read,
    so a verbose llama-server (or any one, after ~80 requests) blocked in a log write and the suite hung."""
    server = LlamaServer(llama_server_bin, default_model_path, extra=["--verbose"])
    try:
        for i in range(5):
            out = server.post("/completion", {"prompt": f"Count to {i}:", "n_predict": 4}, timeout=120)
            assert out["tokens_predicted"] >= 1
        assert server.log_path.stat().st_size > 64 * 1024  # more log than a pipe holds
    finally:
        server.stop()


@pytest.mark.integration
async def test_proxy_forwards_a_verbose_llama_server_log_and_keeps_serving(default_model_path) -> None:
    """The real llama-server with --verbose logs each request body as one line: a prompt of 70 KB of
    spaces (a few thousand tokens) makes a line over 64 KiB, which used to end the proxy's forwarder;
    the verbose log of the next requests then filled the pipe and llama-server stopped."""
    proxy = ProxyProcess(["--log-level", "debug", "--parallel", "1", "--ctx-size", "8192", "--", "--verbose"])
    try:
        timeout = aiohttp.ClientTimeout(total=180)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            big = {"messages": [{"role": "user", "content": "Hi" + " " * 70_000 + "there"}], "max_tokens": 2}
            async with session.post(proxy.base_url + "/chat/completions", json=big) as r:
                assert r.status == 200, await r.text()
            for i in range(12):
                small = {"messages": [{"role": "user", "content": f"Say {i}"}], "max_tokens": 8, "stream": i % 2 == 1}
                async with session.post(proxy.base_url + "/chat/completions", json=small) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
            async with session.get(proxy.url + "/health") as r:
                assert r.status == 200 and (await r.json())["upstream"]["stalls"] == 0
        deadline = time.monotonic() + 10
        while "more bytes of this line not shown" not in proxy.log() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        log = proxy.log()
        assert "more bytes of this line not shown" in log  # the long line was forwarded, cut
        assert "oaiproxy.llama_server.output: " in log  # llama-server's own lines reach the proxy log
    finally:
        proxy.stop()
