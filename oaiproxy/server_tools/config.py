"""The tools file's sources, validated with pydantic: each error names its field."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
