"""The tools file's sources, validated with pydantic: each error names its field."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oaiproxy.templating.sandbox import SandboxedTemplate, TemplateError


class HeaderValue(BaseModel):
    """A header sent on every call: a literal ``value`` or the variable ``from_env`` names (read at call time)."""

    model_config = ConfigDict(extra="forbid")

    value: str | None = Field(default=None, repr=False)
    from_env: str | None = None

    @model_validator(mode="after")
    def _one(self) -> HeaderValue:
        if (self.value is None) == (self.from_env is None):
            raise ValueError("give exactly one of 'value' and 'from_env'")
        return self

    def resolve(self, name: str) -> str:
        if self.value is not None:
            return self.value
        assert self.from_env is not None
        found = os.environ.get(self.from_env)
        if found is None:
            raise KeyError(f"header {name!r}: the environment variable {self.from_env} is not set")
        return found

    def describe(self) -> str:
        """What a listing shows: never the value."""
        return f"from_env {self.from_env}" if self.from_env else "(set)"


NAMESPACE = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"


class OpenAPISource(BaseModel):
    """An OpenAPI 3.x service: each operation one tool named ``namespace_operationId``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["openapi"] = "openapi"
    #: the spec: an http(s) URL or a file path
    url: str
    namespace: str = Field(pattern=NAMESPACE)
    #: where calls go (default: the spec's first ``servers`` entry, relative to the spec's URL)
    base_url: str | None = None
    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    headers: dict[str, HeaderValue] = Field(default_factory=dict)
    timeout: float = Field(default=30.0, gt=0, le=3600)
    max_response_bytes: int = Field(default=1_000_000, ge=1, le=100_000_000)
    #: seconds between re-fetches of a spec served over http(s) (None: fetched once); a spec file is watched
    refresh_interval: float | None = Field(default=None, ge=1, le=86_400)

    @model_validator(mode="after")
    def _base(self) -> OpenAPISource:
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        return self


class MCPSource(BaseModel):
    """An MCP server: over stdio (``command``, ``args``, ``env``) or streamable HTTP (``url``, ``headers``)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["mcp"] = "mcp"
    namespace: str = Field(pattern=NAMESPACE)
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, HeaderValue] = Field(default_factory=dict)
    url: str | None = None
    headers: dict[str, HeaderValue] = Field(default_factory=dict)
    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    timeout: float = Field(default=30.0, gt=0, le=3600)
    max_response_bytes: int = Field(default=1_000_000, ge=1, le=100_000_000)
    #: seconds between re-listings of the server's tools (None: listed at load, and again when the
    #: server announces ``notifications/tools/list_changed``)
    refresh_interval: float | None = Field(default=None, ge=1, le=86_400)

    @model_validator(mode="after")
    def _transport(self) -> MCPSource:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' (stdio) and 'url' (streamable HTTP)")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must be an http:// or https:// URL")
        if self.command is None and (self.args or self.env):
            raise ValueError("'args' and 'env' go with 'command'")
        if self.url is None and self.headers:
            raise ValueError("'headers' go with 'url'")
        return self


def selected(name: str, include: list[str] | None, exclude: list[str]) -> bool:
    return (include is None or name in include) and name not in exclude


Source = Annotated[OpenAPISource | MCPSource, Field(discriminator="type")]

#: a brain's name: what clients send as ``model``
BRAIN_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"


class Brain(BaseModel):
    """A model alias that runs server tools in a loop: its own system prompt, tools and limits.

    A request whose ``model`` is the brain's name gets the final answer the model reached after calling
    the brain's tools (the proxy runs them), with the steps it took.
    """

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    #: a Jinja2 template (sandboxed) rendered per request with ``date``, ``time``, ``datetime`` (ISO 8601,
    #: UTC), ``user`` (the request's user, or None), ``thread`` (the history: role/content dicts) and
    #: ``brain`` (this brain's name); empty: no system prompt of the brain's own
    system_prompt: str = ""
    #: source namespaces or tool names (``namespace_operationId``) the brain may call; empty: every source
    tools: list[str] = Field(default_factory=list)
    #: the most tool rounds per request; after that the model answers without tools
    max_iterations: int = Field(default=4, ge=1, le=64)
    #: how many of the latest history messages reach the model (the brain's system prompt apart)
    history_depth: int = Field(default=32, ge=1, le=10_000)
    #: the first round's tool choice: "required" makes the model call a tool before it answers
    tool_choice: Literal["auto", "required"] = "auto"
    #: the most tokens of each round, for requests that set none (None: the server's --default-max-tokens)
    max_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _prompt_compiles(self) -> Brain:
        if self.system_prompt:
            try:
                SandboxedTemplate(self.system_prompt, name="system_prompt")
            except TemplateError as exc:
                raise ValueError(str(exc)) from None
        return self


class ToolsFile(BaseModel):
    """The ``--tools`` file: tool sources and the brains that use them."""

    model_config = ConfigDict(extra="forbid")

    sources: list[Source] = Field(default_factory=list)
    brains: dict[Annotated[str, Field(pattern=BRAIN_NAME)], Brain] = Field(default_factory=dict)
    #: seconds between checks of the tools file and of spec files for changes
    watch_interval: float = Field(default=2.0, ge=0.1, le=3600)

    @model_validator(mode="after")
    def _names(self) -> ToolsFile:
        seen: set[str] = set()
        for i, src in enumerate(self.sources):
            if src.namespace in seen:
                raise ValueError(f"sources[{i}].namespace: {src.namespace!r} is used by an earlier source")
            seen.add(src.namespace)
        for name, brain in self.brains.items():
            for j, ref in enumerate(brain.tools):
                if ref not in seen and not any(ref.startswith(ns + "_") for ns in seen):
                    raise ValueError(f"brains.{name}.tools[{j}]: {ref!r} is no source's namespace "
                                     "nor a tool name of one (namespace_operation)")
        return self
