"""The operator UI, served by the proxy itself: status, playground, threads and grammar lab (docs/ui.md).

Plain HTML, CSS and JavaScript shipped as package data (``static/``): nothing to build, nothing
fetched at run time. The page talks only to the proxy's own routes and to ``/ui/api/...``
(:mod:`oaiproxy.api.ui.routes`, :mod:`oaiproxy.api.ui.inspect`).
"""

from oaiproxy.api.ui.inspect import inspected_chat
from oaiproxy.api.ui.routes import STATIC, grammar, index, list_threads, sample, status, to_ui, watch_log

__all__ = ["STATIC", "grammar", "index", "inspected_chat", "list_threads", "sample", "status", "to_ui", "watch_log"]
