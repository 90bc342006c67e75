"""A small MCP server written with the ``mcp`` SDK, for the server-tools tests.

``python mcp_server.py`` serves over stdio; ``python mcp_server.py http PORT`` over streamable HTTP
at ``http://127.0.0.1:PORT/mcp``.
"""

from __future__ import annotations

import os
import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("test-tools")


@server.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@server.tool()
def greet(name: str) -> str:
    """Greet someone; the greeting word comes from the server's environment (GREETING)."""
    return f"{os.environ.get('GREETING', 'Hello')}, {name}!"


@server.tool()
def refuse() -> str:
    """Always fails."""
    raise ToolError("refused on purpose")


@server.tool()
def crash() -> str:
    """Ends the server process mid-call."""
    os._exit(3)


@server.tool()
def hang() -> str:
    """Never answers in time."""
    time.sleep(30)
    return "late"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
