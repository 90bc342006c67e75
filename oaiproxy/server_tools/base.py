"""What every source gives: tools with a spec for the grammar and a way to run a call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from oaiproxy.conversation.model import ToolSpec


class SourceError(ValueError):
    """A source that cannot be loaded; the message names the source."""


@dataclass(frozen=True)
class ToolResult:
    """What a call gave back: the text the model reads, its content type, and whether it failed."""

    content: str
    content_type: str = "text/plain"
    is_error: bool = False


@dataclass(frozen=True)
class ServerTool:
    """One tool the proxy runs itself."""

    spec: ToolSpec
    #: the source's name (its namespace), as listings show it
    source: str
    #: runs one call on decoded arguments; never raises for a failing service (an error result instead)
    run: Callable[[dict[str, Any]], Awaitable[ToolResult]]
