#!/usr/bin/env python3
"""Benchmark the upstream pool: throughput and p95 latency of the real proxy in front of 1, 2 and 4 stub
llama-servers that stream a fixed number of tokens with a fixed delay per token.

The stubs (tests/scaling/stand_in.py) take no CPU to speak of, so what the figures show is the proxy's
own cost: routing, admission, the plan, the parse. Each stub has ``--slots`` slots; the load is a closed
loop of exactly as many clients as the upstreams have slots in all, so an ideal proxy would finish every
request in ``tokens × delay`` seconds and serve ``slots / (tokens × delay)`` requests a second. The table
gives each run's throughput and latency as ratios: to that ideal, and to the one-upstream run.

One upstream is the proxy's plain ``--endpoint`` client, as before; two and four are a pool (``--endpoint``
repeated). This machine is shared and has two cores: the figures are noisy (run it twice); the ratios, not
the absolute numbers, are the result.

    python scripts/bench_upstreams.py [--seconds 8] [--tokens 32] [--delay 0.02] [--slots 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

from _benchlib import ProxyServer, machine_info, percentile, ratio, stop_children_on_sigterm, table, write_json  # noqa: E402

from tests.scaling.stand_in import Replica, replica_app  # noqa: E402


class Stubs:
    """``n`` stand-in llama-servers on their own event loop in a thread (the load generator has the main one)."""

    def __init__(self, n: int, *, tokens: int, delay: float, slots: int):
        self.replicas = [Replica(f"stub-{i}", text="word" * tokens, token_delay=delay, slots=slots)
                         for i in range(n)]
        self.urls: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self._loop)

        async def start() -> list[web.AppRunner]:
            runners = []
            for r in self.replicas:
                runner = web.AppRunner(replica_app(r), access_log=None)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                port = runner.addresses[0][1]
                self.urls.append(f"http://127.0.0.1:{port}")
                runners.append(runner)
            return runners

        self._runners = self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        async def cleanup() -> None:
            for runner in self._runners:
                await runner.cleanup()
        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


async def load(url: str, clients: int, seconds: float) -> tuple[list[float], int, float]:
    """A closed loop of ``clients`` clients for ``seconds``: each request's latency, the failures, the wall time."""
    import aiohttp

    latencies: list[float] = []
    failures = 0
    body = {"messages": [{"role": "user", "content": "Say something."}], "max_tokens": 64}
    end = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async def client(i: int) -> None:
            nonlocal failures
            while time.perf_counter() < end:
                started = time.perf_counter()
                async with http.post(url + "/v1/chat/completions", json=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        failures += 1
                        continue
                latencies.append(time.perf_counter() - started)

        begun = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        return latencies, failures, time.perf_counter() - begun


def run(n: int, args: argparse.Namespace) -> dict[str, Any]:
    stubs = Stubs(n, tokens=args.tokens, delay=args.delay, slots=args.slots)
    extra = [a for url in stubs.urls[1:] for a in ("--endpoint", url)]
    proxy = ProxyServer(stubs.urls[0], args=[*extra, "--max-queue", "256"])
    try:
        clients = n * args.slots
        asyncio.run(load(proxy.url, clients, 1.0))  # warm-up: connections, the plan cache
        latencies, failures, wall = asyncio.run(load(proxy.url, clients, args.seconds))
    finally:
        proxy.stop()
        stubs.stop()
    ideal_latency = args.tokens * args.delay
    ideal_rps = clients / ideal_latency
    rps = len(latencies) / wall
    spread = [len(r.prompts) for r in stubs.replicas]
    return {"upstreams": n, "clients": clients, "requests": len(latencies), "failures": failures, "rps": rps,
            "ideal_rps": ideal_rps, "p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
            "ideal_latency": ideal_latency, "per_upstream": spread}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstreams", default="1,2,4", help="comma list of pool sizes")
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per pool size")
    ap.add_argument("--tokens", type=int, default=32, help="tokens each stub streams per request")
    ap.add_argument("--delay", type=float, default=0.02, help="seconds per token")
    ap.add_argument("--slots", type=int, default=2, help="slots per stub")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    stop_children_on_sigterm()
    results = [run(int(n), args) for n in args.upstreams.split(",")]
    base = results[0]
    rows = [[r["upstreams"], r["clients"], r["requests"], r["failures"], r["rps"], ratio(r["rps"], r["ideal_rps"]),
             ratio(r["rps"], base["rps"]), r["p95"], ratio(r["p95"], r["ideal_latency"]),
             ratio(r["p95"], base["p95"]), "/".join(map(str, r["per_upstream"]))] for r in results]
    print(table(f"proxy in front of stub upstreams ({args.tokens} tokens × {args.delay * 1000:g} ms, {args.slots} "
                "slots each; noisy: a shared 2-core machine)",
                ["upstreams", "clients", "requests", "failed", "req/s", "req/s ÷ ideal", "req/s ÷ 1 upstream",
                 "p95 s", "p95 ÷ ideal", "p95 ÷ 1 upstream", "per upstream (with warm-up)"], rows))
    if args.json:
        write_json(args.json, {"machine": machine_info(), "args": vars(args), "results": results})


if __name__ == "__main__":
    main()
