"""The query parameters of the list routes (stored responses' input items, conversation items, threads,
the UI's thread list), and their one default and bound.

OpenAI's list endpoints take ``limit`` and ``order``; every route that pages reads them here, so a bad
value is the same 400 naming the parameter everywhere.
"""

from __future__ import annotations

from aiohttp import web

from oaiproxy.errors import BadRequest

#: ``limit``: OpenAI's default and bounds for its list routes, which the proxy's own lists follow too
PAGE_DEFAULT, PAGE_MAX = 20, 100


def query_limit(request: web.Request, default: int, most: int) -> int:
    """``?limit=``: an integer from 1 to ``most`` (``default`` when absent)."""
    raw = request.query.get("limit", str(default))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= most:
        raise BadRequest(f"'limit' must be an integer from 1 to {most}, not {raw!r}", param="limit",
                         code="invalid_value")
    return limit


def query_order(request: web.Request, default: str) -> str:
    """``?order=``: ``asc`` or ``desc`` (``default`` when absent)."""
    order = request.query.get("order", default)
    if order not in ("asc", "desc"):
        raise BadRequest(f"'order' must be 'asc' or 'desc', not {order!r}", param="order", code="invalid_value")
    return order


__all__ = ["PAGE_DEFAULT", "PAGE_MAX", "query_limit", "query_order"]
