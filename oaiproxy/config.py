"""Settings for one proxy instance, from the command line, ``OAIPROXY_*`` variables and a YAML file.

Precedence: command line, then environment, then ``--config`` file, then defaults.
The CLI fills :class:`Settings`; everything else reads only this object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(ValueError):
    """A bad option or config file; the message names the option."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    endpoint: str | None = None
    server_bin: Path | None = None
    ctx_size: int = Field(default=4096, ge=256)
    parallel: int = Field(default=2, ge=1, le=64)
    threads: int | None = Field(default=None, ge=1)
    chat_template_file: Path | None = None
    style: str | None = None
    alias: str | None = None
    api_key: str | None = None
    log_level: str = "info"
    default_max_tokens: int = Field(default=1024, ge=1)
    startup_timeout: float = Field(default=300.0, gt=0)
    server_args: list[str] = Field(default_factory=list)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in ("debug", "info", "warning", "error", "critical"):
            raise ValueError("must be one of debug, info, warning, error, critical")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value


FIELDS = tuple(Settings.model_fields)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML config file whose keys are option names (``ctx-size`` or ``ctx_size``)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config: {path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config: {path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path}: expected a mapping of option names to values")
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in FIELDS:
            raise ConfigError(f"--config: {path}: unknown option '{key}' (valid: {', '.join(f.replace('_', '-') for f in FIELDS)})")
        out[name] = value
    return out


def build_settings(values: dict[str, Any]) -> Settings:
    try:
        return Settings(**values)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "options"
        raise ConfigError(f"{name}: {err['msg']}") from None
