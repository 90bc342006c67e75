"""One declaration per setting: every field of Settings is a command-line option, an ``OAIPROXY_*``
variable and a ``--config`` YAML key, and the sources stack as the README says (command line, then
environment, then YAML file, then the field's default). Driven through the real typer app in-process,
with the server start replaced by a recorder."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic_settings import EnvSettingsSource
from typer.testing import CliRunner

from oaiproxy import cli
from oaiproxy.runtime.llama_server import ServerOptions
from oaiproxy.settings import (
    CONFIG_FIELD,
    FIELDS,
    PASSTHROUGH_FIELD,
    ConfigError,
    Settings,
    env_name,
    load_config_file,
    option_name,
)

OPTION_FIELDS = [name for name in Settings.model_fields if name != PASSTHROUGH_FIELD]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OAIPROXY_* variable from the caller's shell; logging as it was (serve() configures it)."""
    for name in list(os.environ):
        if name.startswith("OAIPROXY_"):
            monkeypatch.delenv(name)
    output = logging.getLogger("oaiproxy.llama_server.output")
    level = output.level
    yield
    output.setLevel(level)


class Run:
    def __init__(self, exit_code: int, output: str, settings: Settings | None):
        self.exit_code, self.output, self.settings = exit_code, output, settings


def run(monkeypatch: pytest.MonkeyPatch, *args: str, env: dict[str, str] | None = None) -> Run:
    """``python -m oaiproxy ARGS`` with ENV, up to the point where the server would start."""
    seen: list[Settings] = []

    async def record(settings: Settings) -> None:
        seen.append(settings)

    monkeypatch.setattr(cli, "_serve", record)
    result = CliRunner().invoke(cli.app, list(args), env=env)
    assert "Traceback" not in result.output
    return Run(result.exit_code, result.output, seen[0] if seen else None)


def test_every_setting_is_an_option_with_its_help() -> None:
    command = typer.main.get_command(cli.app)
    options = {p.name: p for p in command.params}
    assert sorted(options) == sorted(OPTION_FIELDS)  # no option without a field, no field without an option
    for name in OPTION_FIELDS:
        option = options[name]
        description = Settings.model_fields[name].description
        assert description, f"{name}: a setting needs its help text"
        assert option.opts == [option_name(name)]
        assert option.help is not None and option.help.startswith(description)
        assert env_name(name) in option.help


def test_help_shows_every_option_env_var_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    out = " ".join(run(monkeypatch, "--help").output.split())  # unwrapped
    for name in OPTION_FIELDS:
        assert option_name(name) in out and env_name(name) in out
    assert "OAIPROXY_PORT; default: 8080]" in out and "OAIPROXY_STREAM_TOOL_CALLS; default: whole]" in out


def test_every_setting_is_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.setenv(env_name(name), "probe")
    monkeypatch.setenv("OAIPROXY_NOT_A_SETTING", "ignored")
    assert EnvSettingsSource(Settings)() == {name: "probe" for name in Settings.model_fields}


def test_every_setting_but_config_is_a_yaml_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("".join(f"{name.replace('_', '-')}: 1\n" for name in FIELDS))
    assert sorted(load_config_file(cfg)) == sorted(Settings.model_fields.keys() - {CONFIG_FIELD})
    cfg.write_text(f"{CONFIG_FIELD}: other.yaml\n")
    with pytest.raises(ConfigError, match="unknown option 'config'"):
        load_config_file(cfg)


def test_precedence_command_line_env_yaml_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ctx-size: 1024\nalias: from-yaml\n")
    env = {"OAIPROXY_CTX_SIZE": "2048"}

    def ctx_size(*args: str, env: dict[str, str] | None = None) -> int | None:
        result = run(monkeypatch, *args, env=env)
        assert result.exit_code == 0, result.output
        assert result.settings is not None
        return result.settings.ctx_size

    assert ctx_size("--config", str(cfg), "--ctx-size", "4096", env=env) == 4096  # command line wins
    assert ctx_size("--config", str(cfg), env=env) == 2048  # then the environment
    assert ctx_size("--config", str(cfg)) == 1024  # then the file
    assert ctx_size() is Settings.model_fields["ctx_size"].default is None  # then the default
    # the file named by the environment instead of the command line; the other keys still come through
    result = run(monkeypatch, env={"OAIPROXY_CONFIG": str(cfg)})
    assert result.settings is not None and (result.settings.ctx_size, result.settings.alias) == (1024, "from-yaml")


def test_command_line_values_are_converted_by_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(monkeypatch, "--port", "9001", "--request-timeout", "30", "--model", "m.gguf", "--tool-extra-keys",
                 "--cors-origin", "http://a.example", "--cors-origin", "http://b.example/,http://c.example",
                 "--log-level", "DEBUG", "--stream-tool-calls", "Incremental")
    s = result.settings
    assert s is not None, result.output
    assert (s.port, s.request_timeout, [m.path for m in s.model], s.tool_extra_keys) == (9001, 30.0, [Path("m.gguf")],
                                                                                       True)
    assert s.cors_origin == ["http://a.example", "http://b.example", "http://c.example"]
    assert (s.log_level, s.stream_tool_calls) == ("debug", "incremental")
    # a flag given as false on the command line beats a true one from the environment
    result = run(monkeypatch, "--no-tool-extra-keys", env={"OAIPROXY_TOOL_EXTRA_KEYS": "true"})
    assert result.settings is not None and result.settings.tool_extra_keys is False


def test_arguments_after_double_dash_follow_the_lower_sources(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server_args: ['--mlock']\n")
    result = run(monkeypatch, "--config", str(cfg), "--", "--no-mmap", "-fa")
    assert result.settings is not None and result.settings.server_args == ["--mlock", "--no-mmap", "-fa"]
    result = run(monkeypatch, env={"OAIPROXY_SERVER_ARGS": "--mlock --override-kv 'a=str:b c'"})
    assert result.settings is not None and result.settings.server_args == ["--mlock", "--override-kv", "a=str:b c"]


@pytest.mark.parametrize("source", ["command line", "environment", "yaml"])
def test_a_bad_value_names_the_option_from_every_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        source: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("parallel: zero\n")
    args: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
        "command line": (("--parallel", "zero"), {}),
        "environment": ((), {"OAIPROXY_PARALLEL": "zero"}),
        "yaml": (("--config", str(cfg)), {}),
    }
    argv, env = args[source]
    result = run(monkeypatch, *argv, env=env)
    assert result.exit_code == 2 and result.settings is None
    assert "oaiproxy: error: --parallel: Input should be a valid integer" in result.output


def test_server_options_take_the_settings_defaults() -> None:
    hand_built = ServerOptions(binary=Path("x"), model=Path("m"))
    settings = Settings()
    from_settings = ServerOptions.from_settings(settings, binary=Path("x"), model=Path("m"), ctx_size=4096,
                                                extra_args=[])
    fields: tuple[str, ...] = ("parallel", "threads", "startup_timeout")
    expected: dict[str, Any] = {name: getattr(settings, name) for name in fields}
    assert {name: getattr(hand_built, name) for name in fields} == expected
    assert {name: getattr(from_settings, name) for name in fields} == expected
    custom = ServerOptions.from_settings(Settings(parallel=4, threads=3, startup_timeout=9), binary=Path("x"),
                                         model=Path("m"), ctx_size=8192, extra_args=["--mlock"])
    assert custom.command(1234) == ["x", "--model", "m", "--host", "127.0.0.1", "--port", "1234", "--ctx-size", "8192",
                                    "--parallel", "4", "--no-webui", "--threads", "3", "--mlock"]
    assert (custom.parallel, custom.threads, custom.startup_timeout, custom.extra_args) == (4, 3, 9.0, ["--mlock"])
