"""Compatibility shim: what dialects/_common.py held now lives in modules named after their jobs.

call ids: :mod:`oaiproxy.dialects.call_ids`; GBNF helpers: :mod:`oaiproxy.dialects.gbnf`;
prompt helpers and the history rewriter: :mod:`oaiproxy.dialects.prompting`; the stream-parser
core: :mod:`oaiproxy.dialects.streaming`. Only names still imported from outside the dialect
package are re-exported here (tests/api/test_strict.py); remove this module once they import
from the new places.
"""

from __future__ import annotations

from oaiproxy.dialects.gbnf import add_tool_args

__all__ = ["add_tool_args"]
