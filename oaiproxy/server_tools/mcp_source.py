"""An MCP server as server tools, with the official ``mcp`` SDK: stdio or streamable HTTP.

Each tool's ``inputSchema`` is its parameters (checked like any tool's: a schema the grammar cannot
enforce exactly skips the tool, and the listing says why). Every call opens its own session
(a stdio server is started for it) and is bounded by the source's ``timeout``, so a server that
crashes or hangs gives the model a tool error, never a hung request. The environment and headers
given to the server are never logged or listed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from oaiproxy.conversation.checks import check_schema_for
from oaiproxy.conversation.model import ToolSpec
from oaiproxy.errors import BadRequest
from oaiproxy.server_tools.base import ServerTool, SourceError, ToolResult
from oaiproxy.server_tools.config import MCPSource, selected
from oaiproxy.server_tools.openapi import LoadedSource, display_url, tool_name

log = logging.getLogger("oaiproxy.server_tools")


def _origin(cfg: MCPSource) -> str:
    return display_url(cfg.url) if cfg.url else " ".join([cfg.command or "", *cfg.args])


@asynccontextmanager
async def connect(cfg: MCPSource) -> AsyncIterator[Any]:
    """A connected ``mcp.Client`` for the source (headers and env resolved now)."""
    from mcp import Client, StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    if cfg.url is not None:
        headers = {name: value.resolve(name) for name, value in cfg.headers.items()}
        async with create_mcp_http_client(headers=headers) as http, \
                Client(streamable_http_client(cfg.url, http_client=http)) as client:
            yield client
    else:
        assert cfg.command is not None
        env = {name: value.resolve(name) for name, value in cfg.env.items()}
        async with Client(StdioServerParameters(command=cfg.command, args=cfg.args, env=env or None)) as client:
            yield client


def _failure(exc: BaseException) -> str:
    """A short reason: the first leaf of an exception group, its type and message."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def result_text(result: Any) -> tuple[str, str]:
    """A ``CallToolResult`` as the text the model reads, and its content type."""
    parts: list[str] = []
    for item in result.content or []:
        kind = getattr(item, "type", "")
        if kind == "text":
            parts.append(item.text)
        elif kind == "resource" and hasattr(item.resource, "text"):
            parts.append(item.resource.text)
        else:
            parts.append(f"({kind} content, not shown to the model)")
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False), "application/json"
    return "\n".join(parts), "text/plain"


async def load_mcp(cfg: MCPSource) -> LoadedSource:
    """The server's tools (listed once, over a session of its own), or a :class:`SourceError` naming it."""
    where = f"source {cfg.namespace!r} ({_origin(cfg)})"
    try:
        async with asyncio.timeout(cfg.timeout), connect(cfg) as client:
            listed = []
            cursor = None
            while True:
                page = await client.list_tools(cursor=cursor)
                listed.extend(page.tools)
                cursor = page.next_cursor
                if not cursor or len(listed) > 10_000:
                    break
    except TimeoutError:
        raise SourceError(f"{where}: no tool list within {cfg.timeout:g} s") from None
    except KeyError as exc:
        raise SourceError(f"{where}: {exc.args[0]}") from None
    except Exception as exc:
        raise SourceError(f"{where}: cannot list its tools: {_failure(exc)}") from None
    tools: list[ServerTool] = []
    skipped: dict[str, str] = {}
    for t in listed:
        if not selected(t.name, cfg.include, cfg.exclude):
            continue
        name = tool_name(cfg.namespace, t.name)
        schema = dict(t.input_schema or {"type": "object", "properties": {}})
        try:
            check_schema_for(schema, name, f"tool {name!r}")
        except BadRequest as exc:
            skipped[t.name] = exc.message
            log.warning("%s: tool %s skipped: %s", where, t.name, exc.message)
            continue
        spec = ToolSpec(name=name, description=(t.description or t.title or t.name)[:1000], parameters=schema)
        tools.append(ServerTool(spec=spec, source=cfg.namespace, run=_caller(cfg, t.name)))
    return LoadedSource(name=cfg.namespace, kind="mcp", origin=_origin(cfg), tools=tools, skipped=skipped,
                        details={"transport": "streamable-http" if cfg.url else "stdio",
                                 "env": {k: v.describe() for k, v in cfg.env.items()},
                                 "headers": {k: v.describe() for k, v in cfg.headers.items()},
                                 "timeout": cfg.timeout})


def _caller(cfg: MCPSource, remote_name: str) -> Any:
    label = f"{cfg.namespace}: {remote_name}"

    async def run(args: dict[str, Any]) -> ToolResult:
        try:
            async with asyncio.timeout(cfg.timeout), connect(cfg) as client:
                result = await client.call_tool(remote_name, args)
        except TimeoutError:
            return ToolResult(f"{label}: no answer within {cfg.timeout:g} s (timeout)", is_error=True)
        except KeyError as exc:
            return ToolResult(f"cannot call {label}: {exc.args[0]}", is_error=True)
        except Exception as exc:
            log.warning("server tool %s failed: %s", label, _failure(exc))
            return ToolResult(f"{label} failed: {_failure(exc)}", is_error=True)
        text, ctype = result_text(result)
        if len(text.encode()) > cfg.max_response_bytes:
            return ToolResult(f"{label}: the result is larger than {cfg.max_response_bytes} bytes "
                              "(max_response_bytes)", is_error=True)
        return ToolResult(text, ctype, is_error=bool(result.is_error))

    return run


__all__ = ["connect", "load_mcp", "result_text"]
