"""Settings for one proxy instance, from the command line, ``OAIPROXY_*`` variables and a YAML file.

Precedence: command line, then environment, then ``--config`` file, then defaults.
The CLI fills :class:`Settings`; everything else reads only this object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator


class ConfigError(ValueError):
    """A bad option or config file; the message names the option."""


#: llama-server --pooling values that give one vector per input; "model" keeps the GGUF's own choice
EMBEDDING_POOLINGS = ("mean", "cls", "last", "model")

#: how streamed tool calls reach the client: "whole" (each call in one delta, once it is complete and
#: validated) or "incremental" (arguments as they are generated, as OpenAI streams them)
STREAM_TOOL_CALLS = ("whole", "incremental")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    endpoint: str | None = None
    server_bin: Path | None = None
    #: None: the model's own trained context for every slot, bounded by memory (see server.py)
    ctx_size: int | None = Field(default=None, ge=256)
    parallel: int = Field(default=2, ge=1, le=64)
    threads: int | None = Field(default=None, ge=1)
    chat_template_file: Path | None = None
    style: str | None = None
    alias: str | None = None
    # repr=False: a settings dump in a log or traceback must not show the key
    api_key: str | None = Field(default=None, repr=False)
    log_level: str = "info"
    default_max_tokens: int = Field(default=1024, ge=1)
    startup_timeout: float = Field(default=300.0, gt=0)
    server_args: list[str] = Field(default_factory=list)
    embedding_model: str | None = None
    embedding_endpoint: str | None = None
    embedding_pooling: str = "mean"
    cors_origin: list[str] = Field(default_factory=list)
    request_timeout: float = Field(default=600.0, gt=0)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_queue: int = Field(default=64, ge=0)
    stall_timeout: float = Field(default=120.0, gt=0)
    stream_tool_calls: str = "whole"
    tool_extra_keys: bool = False

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in ("debug", "info", "warning", "error", "critical"):
            raise ValueError("must be one of debug, info, warning, error, critical")
        return value

    @field_validator("endpoint", "embedding_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("stream_tool_calls", "embedding_pooling")
    @classmethod
    def _one_of(cls, value: str, info: ValidationInfo) -> str:
        """Case-insensitive choice among the option's fixed values."""
        choices = {"stream_tool_calls": STREAM_TOOL_CALLS, "embedding_pooling": EMBEDDING_POOLINGS}[info.field_name]
        value = value.lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    @field_validator("cors_origin", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        """Repeated options, comma lists (one env variable) and YAML lists all end up as one list."""
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            return value
        out = []
        for item in value:
            if not isinstance(item, str):
                raise ValueError("must be origins like https://app.example.com, or *")
            for origin in item.replace(",", " ").split():
                origin = origin.rstrip("/")
                if origin != "*" and not origin.startswith(("http://", "https://")):
                    raise ValueError(f"'{origin}' is not an origin: use scheme://host[:port], or *")
                out.append(origin)
        return out

    @model_validator(mode="after")
    def _one_embedding_source(self) -> "Settings":
        if self.embedding_model and self.embedding_endpoint:
            raise ValueError("--embedding-model and --embedding-endpoint exclude each other; give one")
        return self


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
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"]:  # a cross-field rule: its message names the options
            raise ConfigError(msg) from None
        name = "--" + str(err["loc"][0]).replace("_", "-")
        raise ConfigError(f"{name}: {msg}") from None
