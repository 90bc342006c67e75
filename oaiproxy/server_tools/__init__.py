"""Server-side tools: OpenAPI services and MCP servers the proxy calls itself (issue 14).

``openapi.py`` turns an OpenAPI 3.x document into :class:`ServerTool` s and sends their calls;
``mcp_source.py`` does the same for an MCP server. Each tool carries a
:class:`oaiproxy.conversation.model.ToolSpec` for the grammar and an async ``call`` that gives a
:class:`ToolResult`. See docs/server-tools.md.
"""
