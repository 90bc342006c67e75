"""The proxy's own start-up with several models (``oaiproxy.server.Proxy``), on a stand-in llama-server binary
(it answers ``/health``): no llama-server runs until a model is used; using one spawns it with that
model's own options; using another beyond ``--max-loaded`` stops the first one's process; a bad per-model
option fails the start naming it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from oaiproxy.server import Proxy
from oaiproxy.settings import ConfigError, build_settings
from tests._processes import pid_alive, write_stand_in

STAND_IN = "serve_health_in_background()\nimport time\nwhile True:\n    time.sleep(1)\n"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OAIPROXY_"):
            monkeypatch.delenv(name)


def settings(tmp_path: Path, gguf: Path, **values: Any) -> Any:
    return build_settings({"server_bin": str(write_stand_in(tmp_path, STAND_IN)), "port": 0,
                           "data_dir": str(tmp_path / "data"), "max_loaded": 1, "ctx_size": 2048, "model": [
                               {"path": str(gguf), "alias": "a"},
                               {"path": str(gguf), "alias": "b", "ctx-size": 1024, "threads": 1}], **values})


async def test_models_spawn_on_use_with_their_own_options_and_stop_beyond_max_loaded(
        tmp_path: Path, default_model_path: Path) -> None:
    proxy = Proxy(settings(tmp_path, default_model_path))
    try:
        await proxy.start()
        assert proxy.models is not None and proxy.state is not None
        assert proxy.state.model_ids == ["a", "b"] and proxy.models.loaded() == []
        async with proxy.models.use("a") as a:
            assert a.managed is not None and a.managed.state == "ready"
            first = a.managed.pid
            assert first is not None and pid_alive(first)
            assert a.client.base_url == a.managed.url
            assert (a.managed.options.ctx_size, a.managed.options.threads) == (2048, None)  # the proxy's own
        async with proxy.models.use("b") as b:
            assert b.managed is not None and b.managed.pid is not None
            assert (b.managed.options.ctx_size, b.managed.options.threads) == (1024, 1)  # its own
            assert not pid_alive(first)  # a's llama-server was stopped to make room
            assert [m.id for m in proxy.models.loaded()] == ["b"]
            second = b.managed.pid
    finally:
        await proxy.stop()
    assert not pid_alive(second)  # stopping the proxy stops the loaded model's llama-server


async def test_a_bad_per_model_style_fails_the_start(tmp_path: Path, default_model_path: Path) -> None:
    proxy = Proxy(settings(tmp_path, default_model_path, model=[
        {"path": str(default_model_path), "alias": "a"},
        {"path": str(default_model_path), "alias": "b", "style": "klingon"}]))
    try:
        with pytest.raises(ConfigError, match="--style: .*klingon"):
            await proxy.start()
    finally:
        await proxy.stop()
