"""An MCP server whose tool list changes, for the catalog's list_changed tests (``mcp`` SDK).

``python mcp_changing_server.py http PORT`` serves over streamable HTTP at ``http://127.0.0.1:PORT/mcp``:
calling ``grow`` adds the tool ``extra`` and announces it. One process serves every session, so the
announcement (an event on the server's subscription bus) reaches every session listening for
``tools_list_changed`` (2026-07-28 ``subscriptions/listen``), not only the one that called ``grow``.

``python mcp_changing_server.py stdio MARKER`` serves over stdio (one process per session): it offers
``extra`` once the file MARKER exists (checked at start, then every 0.1 s) and announces the change to
its own session's listeners. A fresh process started after MARKER appeared lists ``extra`` at once,
as a server whose tools follow outside state does. ``quiet MARKER`` is the same without
``subscriptions/listen``: nobody hears of the change, a client must re-list to see it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, ToolsListChanged

mode = sys.argv[1] if __name__ == "__main__" else "http"
#: the server's own bus, so the stdio watcher can announce outside any request
bus = InMemorySubscriptionBus()
server = MCPServer("changing-tools", subscriptions=False if mode == "quiet" else bus)


def extra(text: str) -> str:
    """Echo the text back (added at run time)."""
    return text


async def _add_extra() -> bool:
    if "extra" in {t.name for t in await server.list_tools()}:
        return False
    server.add_tool(extra)
    return True


@server.tool()
async def grow(ctx: Context) -> str:
    """Add the tool 'extra' and announce that the tool list changed."""
    await _add_extra()
    await ctx.notify_tools_changed()
    return "grown"


async def _watch(marker: Path) -> None:
    while True:
        if marker.exists() and await _add_extra():
            await bus.publish(ToolsListChanged())
        await anyio.sleep(0.1)


async def _stdio(marker: Path) -> None:
    if marker.exists():
        await _add_extra()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch, marker)
        await server.run_stdio_async()
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    if mode == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        anyio.run(_stdio, Path(sys.argv[2]))
