"""The stall watchdog: a generation that brings no event from llama-server for ``--stall-timeout``
seconds ends cleanly (502, or an error event and ``[DONE]``), is counted in ``/health``, and a
spawned llama-server is restarted; with ``--endpoint`` the request is failed and reported only.

A healthy-looking wedge cannot be made on demand in the real llama-server (SIGSTOP stops its
``/health`` too), so the first two tests use a stand-in llama-server that answers ``/health`` and
then stalls a ``/completion`` stream whose prompt says STALL. The last test wedges the real
llama-server the way it wedged in production: a wrapper stops reading its log pipe.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests._processes import Child, ProxyProcess, free_port, write_stand_in

STALLER = """
import json, time, socketserver
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        if self.path == "/props":
            self.reply({"model_path": MODEL, "total_slots": 1, "default_generation_settings": {"n_ctx": 4096}})
        else:
            self.reply({"status": "ok"})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200); self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close"); self.end_headers()
        def event(e):
            self.wfile.write(b"data: " + json.dumps(e).encode() + b"\\n\\n"); self.wfile.flush()
        event({"content": "", "tokens": [0], "stop": False, "tokens_predicted": 0,
               "prompt_progress": {"total": 9, "processed": 9}})
        event({"content": "Hel", "tokens": [1], "stop": False, "tokens_predicted": 1})
        if "STALL" in str(body.get("prompt")):
            print("stand-in: stalling a generation", flush=True)
            time.sleep(3600)  # wedged: /health still answers
        event({"content": "lo", "tokens": [2], "stop": True, "stop_type": "eos", "tokens_predicted": 2,
               "tokens_evaluated": 5, "timings": {}})
        self.close_connection = True
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
S(("127.0.0.1", PORT), H).serve_forever()
"""


def staller(tmp_path: Path) -> Path:
    return write_stand_in(tmp_path, STALLER)


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 16, **extra}


async def read_events(resp: aiohttp.ClientResponse) -> list[str]:
    return [line[6:] for raw in [line async for line in resp.content]
            if (line := raw.decode().strip()).startswith("data: ")]


async def health(session: aiohttp.ClientSession, proxy: ProxyProcess) -> tuple[int, dict[str, Any]]:
    async with session.get(proxy.url + "/health") as r:
        return r.status, await r.json()


async def wait_ready(session: aiohttp.ClientSession, proxy: ProxyProcess, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, h = await health(session, proxy)
        if status == 200 and h["upstream"]["state"] == "ready":
            return h
        await asyncio.sleep(0.2)
    raise AssertionError(f"llama-server not ready again within {timeout} s: {h}")


async def test_a_stalled_generation_restarts_the_spawned_server(tmp_path: Path, default_model_path: Path) -> None:
    proxy = ProxyProcess(["--server-bin", str(staller(tmp_path)), "--stall-timeout", "2", "--parallel", "1"])
    try:
        first_pid = proxy.children()[0]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            async with session.post(proxy.base_url + "/chat/completions", json=chat("Hi")) as r:
                assert r.status == 200 and (await r.json())["choices"][0]["message"]["content"] == "Hello"
            # streamed: the first token arrives, then nothing: an error event, then [DONE]
            async with session.post(proxy.base_url + "/chat/completions",
                                    json=chat("please STALL", stream=True)) as r:
                assert r.status == 200
                events = await read_events(r)
            assert events[-1] == "[DONE]"
            errors = [json.loads(e)["error"] for e in events[:-1] if "error" in json.loads(e)]
            assert len(errors) == 1 and errors[0]["code"] == "upstream_stalled", events
            assert "no progress for 2 s" in errors[0]["message"]
            h = await wait_ready(session, proxy)
            assert proxy.children() and proxy.children()[0] != first_pid  # a new llama-server
            up = h["upstream"]
            assert up["stalls"] == 1 and "reported healthy" in up["last_stall"]
            assert "stall watchdog" in up["last_restart_reason"] and up["restarts_in_window"] == 1
            # not streamed: a 502 in OpenAI's error shape
            async with session.post(proxy.base_url + "/chat/completions", json=chat("STALL again")) as r:
                body = await r.json()
                assert r.status == 502 and body["error"]["code"] == "upstream_stalled", body
            h = await wait_ready(session, proxy)
            assert h["upstream"]["stalls"] == 2
            async with session.post(proxy.base_url + "/chat/completions", json=chat("Hi")) as r:
                assert r.status == 200  # the restarted server serves
        log = proxy.log()
        assert "is stalled" in log and "restarting" in log
    finally:
        proxy.stop()


async def test_a_stalled_generation_on_an_endpoint_fails_and_is_reported(tmp_path: Path,
                                                                        default_model_path: Path) -> None:
    port = free_port()
    server = Child([str(staller(tmp_path)), "--port", str(port), "--model", str(default_model_path)], port=port)
    try:
        server.wait_healthy(60)
        proxy = ProxyProcess(["--endpoint", server.url, "--stall-timeout", "2"])
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
                async with session.post(proxy.base_url + "/chat/completions", json=chat("STALL")) as r:
                    body = await r.json()
                    assert r.status == 502 and body["error"]["code"] == "upstream_stalled", body
                status, h = await health(session, proxy)
                assert status == 200 and h["upstream"]["stalls"] == 1 and h["upstream"]["managed"] is False
                assert h["upstream"]["last_restart_reason"] is None
            assert server.proc.poll() is None  # not ours: not restarted
            assert "restart it yourself" in proxy.log()
        finally:
            proxy.stop()
    finally:
        server.stop()


# Runs the real llama-server with --verbose and reads its output until WEDGE_TRIGGER exists; then
# removes the trigger (so a restarted one drains again) and never reads again, as the proxy's old
# log forwarder did after a long line. llama-server soon blocks in a log write.
WEDGER = """
import os, select, subprocess
trigger = os.environ["WEDGE_TRIGGER"]
child = subprocess.Popen([os.environ["WEDGE_REAL_BINARY"], *ARGS, "--verbose"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
out = child.stdout.fileno()
while not os.path.exists(trigger):
    if select.select([out], [], [], 0.1)[0]:
        data = os.read(out, 1 << 16)
        if not data:
            sys.exit(child.wait())
os.unlink(trigger)
print("wrapper: no longer reading llama-server's log", flush=True)
sys.exit(child.wait())
"""

NO_END = {str(t): -100 for t in [1, 106, *range(107, 138)]}


@pytest.mark.integration
async def test_real_llama_server_wedged_by_an_unread_log_pipe_is_restarted(tmp_path: Path, llama_server_bin: str,
                                                                          default_model_path: Path) -> None:
    wrapper = write_stand_in(tmp_path, WEDGER, name="llama-server-wedger")
    trigger = tmp_path / "stop-reading"
    proxy = ProxyProcess(["--server-bin", str(wrapper), "--stall-timeout", "15", "--parallel", "1",
                          "--ctx-size", "2048"],
                         env={"WEDGE_TRIGGER": str(trigger), "WEDGE_REAL_BINARY": llama_server_bin})
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
            trigger.touch()
            long = {"messages": [{"role": "user", "content": "Write a long story about a dragon."}],
                    "max_tokens": 2000, "temperature": 1.0, "seed": 7, "logit_bias": NO_END, "stream": True}
            async with session.post(proxy.base_url + "/chat/completions", json=long) as r:
                if r.status == 200:
                    events = await read_events(r)
                    assert events[-1] == "[DONE]"
                    error = json.loads(events[-2])["error"]
                else:  # wedged before its first token
                    error = (await r.json())["error"]
                    assert r.status == 502
            assert error["code"] == "upstream_stalled", error
            h = await wait_ready(session, proxy, timeout=180)
            assert h["upstream"]["stalls"] == 1 and "stall watchdog" in h["upstream"]["last_restart_reason"]
            async with session.post(proxy.base_url + "/chat/completions",
                                    json={**long, "max_tokens": 8, "stream": False}) as r:
                assert r.status == 200, await r.text()  # the restarted llama-server serves
        assert "is stalled" in proxy.log(), proxy.log()[-3000:]
    finally:
        proxy.stop()
