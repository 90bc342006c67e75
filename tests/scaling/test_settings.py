"""Several upstreams as a user configures them: --endpoint repeated (command line, environment, YAML),
--replicas, and a proxy assembled on two running stand-in llama-servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from oaiproxy.runtime.pool import UpstreamPool
from oaiproxy.server import Proxy
from oaiproxy.settings import ConfigError, Settings, build_settings
from tests.foundation.test_config_sources import _isolated, run
from tests.scaling.stand_in import Replica, replica_app
from tests.stand_in_app import TEMPLATE

__all__ = ["_isolated"]  # the autouse fixture: no OAIPROXY_* variable from the caller's shell

A, B = "http://127.0.0.1:18081", "http://127.0.0.1:18082"


def test_endpoint_repeated_on_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(monkeypatch, "--endpoint", A, "--endpoint", B + "/")
    assert result.exit_code == 0, result.output
    assert result.settings is not None and result.settings.endpoint == [A, B]


def test_one_endpoint_stays_one(monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(monkeypatch, "--endpoint", A)
    assert result.settings is not None and result.settings.endpoint == [A]
    assert Settings().endpoint == [] and Settings(endpoint=A).endpoint == [A]


def test_endpoints_from_the_environment_and_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = run(monkeypatch, env={"OAIPROXY_ENDPOINT": f"{A},{B}"})
    assert result.settings is not None and result.settings.endpoint == [A, B]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"endpoint:\n  - {A}\n  - {B}\nreplicas: 1\n")
    result = run(monkeypatch, "--config", str(cfg))
    assert result.settings is not None and result.settings.endpoint == [A, B]


def test_bad_endpoints_and_replicas_are_refused() -> None:
    with pytest.raises(ConfigError, match="--endpoint: 'ftp://x' is not an http"):
        build_settings({"endpoint": [A, "ftp://x"]})
    with pytest.raises(ConfigError, match="given twice"):
        build_settings({"endpoint": [A, A + "/"]})
    with pytest.raises(ConfigError, match="--replicas spawns llama-servers"):
        build_settings({"endpoint": [A], "replicas": 2})
    with pytest.raises(ConfigError, match="--replicas with --rpc"):
        build_settings({"rpc": ["10.0.0.2:50052"], "replicas": 2})
    with pytest.raises(ConfigError, match="--replicas"):
        build_settings({"replicas": 0})
    assert build_settings({"replicas": 3}).replicas == 3


async def test_a_proxy_on_two_endpoints_routes_over_both(templates_dir: Path, tmp_path: Path) -> None:
    template = (templates_dir / TEMPLATE).read_text(encoding="utf-8")
    replicas = [Replica("a", text="Hi from a.", template=template, slots=1, token_delay=0.02),
                Replica("b", text="Hi from b.", template=template, slots=3)]
    servers = [TestServer(replica_app(r), host="127.0.0.1") for r in replicas]
    for s in servers:
        await s.start_server()
    urls = [str(s.make_url("")).rstrip("/") for s in servers]
    proxy = Proxy(Settings(endpoint=urls, port=0, data_dir=tmp_path, alias="m"))
    try:
        await proxy.start()
        assert isinstance(proxy.client, UpstreamPool) and proxy.state is not None
        assert [m.slots for m in proxy.client.members] == [1, 3]  # each one's /props
        base = f"http://127.0.0.1:{proxy.port}"
        async with aiohttp.ClientSession() as http:
            async def ask(i: int) -> str:
                async with http.post(base + "/v1/chat/completions", json={
                        "model": "m", "messages": [{"role": "user", "content": f"hello {i}"}]}) as resp:
                    assert resp.status == 200
                    return str((await resp.json())["choices"][0]["message"]["content"])
            answers = await asyncio.gather(*(ask(i) for i in range(8)))
            assert {"Hi from a.", "Hi from b."} == set(answers)
            async with http.get(base + "/health") as resp:
                body = await resp.json()
            assert resp.status == 200
            assert [(u["name"], u["url"], u["state"]) for u in body["upstreams"]] == [
                (u.removeprefix("http://"), u, "ready") for u in urls]
            assert body["upstream"]["slots"] == 4
        assert replicas[0].most_running <= 1 <= len(replicas[0].prompts)
    finally:
        await proxy.stop()
        for s in servers:
            await s.close()


async def test_a_proxy_starts_when_one_endpoint_is_down(templates_dir: Path, tmp_path: Path) -> None:
    template = (templates_dir / TEMPLATE).read_text(encoding="utf-8")
    replica = Replica("a", template=template)
    server = TestServer(replica_app(replica), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    proxy = Proxy(Settings(endpoint=[url, "http://127.0.0.1:9"], port=0, data_dir=tmp_path))
    try:
        await proxy.start()
        assert isinstance(proxy.client, UpstreamPool)
        assert [m.state for m in proxy.client.members] == ["ready", "down"]
    finally:
        await proxy.stop()
        await server.close()
    proxy = Proxy(Settings(endpoint=["http://127.0.0.1:9", "http://127.0.0.1:7"], port=0, data_dir=tmp_path))
    with pytest.raises(ConfigError, match="no healthy llama-server at any of http://127.0.0.1:9, http://127.0.0.1:7"):
        await proxy.start()
    await proxy.stop()
