"""What the proxy counts and logs: Prometheus metrics (``GET /metrics``), the request id, one log line per request.

Every HTTP request gets a :class:`RequestRecord` (its id, from the client's ``X-Request-Id`` when that
is a sane one, else a fresh one) for as long as it is served. The HTTP layer opens it
(:func:`begin`) and closes it (:meth:`RequestRecord.finish`: the request counters, the latency
histograms and the one log line). The stages below write into the record of the request they
serve through the functions here (:func:`note_generation`, :func:`note_tokens`, ...), found
through a context variable, so they need no handle on the app and know nothing of HTTP; called
outside a request (a benchmark, a test of the engine alone) they do nothing.

The metrics live in a :class:`Metrics` per app, each on its own ``CollectorRegistry`` (never
prometheus_client's global one), so several apps in one process count apart. What the proxy's
state says at any moment (queue depth, slots in use, upstream health, the plan cache) is read
when ``/metrics`` is scraped (:meth:`Metrics.render`), not kept up to date on every change.

This module imports nothing of oaiproxy: every stage may import it.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector

log = logging.getLogger("oaiproxy.request")

#: the Content-Type of ``GET /metrics`` (Prometheus' text format 0.0.4)
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: the longest client request id kept; a longer one is replaced
MAX_REQUEST_ID = 128

#: seconds: from a cache-hit token on a short request to --request-timeout's default
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TOOL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


# ---------------------------------------------------------------- request ids


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def request_id(given: str | None) -> str:
    """The client's ``X-Request-Id`` when it is 1-128 printable ASCII characters without spaces, else a new id
    (a bad one is replaced, never refused: the id is for finding the request in the logs)."""
    if given and len(given) <= MAX_REQUEST_ID and all("!" <= c <= "~" for c in given):
        return given
    return new_request_id()


# ---------------------------------------------------------------- the metrics of one app


@dataclass(frozen=True)
class UpstreamView:
    """One llama-server as ``/metrics`` shows it, read at scrape time."""

    url: str
    #: "chat" or "embeddings"
    role: str
    healthy: bool
    #: generations running on it now (its admission's slots in use)
    in_flight: int
    #: requests waiting for a slot (the admission queue)
    waiting: int
    slots: int
    #: requests refused with 429 because the queue was full, since start
    rejected: int
    #: generations the stall watchdog ended, since start
    stalls: int
    #: restarts of a spawned llama-server within the supervisor's window (None: not spawned by oaiproxy)
    restarts: int | None = None


@dataclass(frozen=True)
class PlanCacheView:
    """One engine's plan cache (:mod:`oaiproxy.dialects.plan_cache`), read at scrape time."""

    model: str
    hits: int
    misses: int
    #: plans of a style that does not split its plan: built whole every time, never cached
    bypassed: int
    entries: int
    bytes: int
    max_bytes: int


class Metrics:
    """The metrics of one app, on its own registry; the names are listed in docs/metrics.md."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("oaiproxy_requests", "HTTP requests answered, by route, method, model and status",
                                ["route", "method", "model", "status"], registry=r)
        self.in_flight = Gauge("oaiproxy_requests_in_flight", "HTTP requests being served now", registry=r)
        self.duration = Histogram("oaiproxy_request_duration_seconds",
                                  "Time from a request's arrival to its last byte (a stream's end)",
                                  ["route", "model"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("oaiproxy_time_to_first_token_seconds",
                              "Time from a request's arrival to llama-server's first generated token",
                              ["route", "model"], buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("oaiproxy_prompt_tokens", "Prompt tokens llama-server evaluated "
                                     "(every generation: each round of a tool loop, a reasoning phase)",
                                     ["model"], registry=r)
        self.cached_tokens = Counter("oaiproxy_prompt_tokens_cached", "Of the prompt tokens, those llama-server "
                                     "reused from its cache", ["model"], registry=r)
        self.completion_tokens = Counter("oaiproxy_completion_tokens", "Tokens llama-server generated",
                                         ["model"], registry=r)
        self.generations = Counter("oaiproxy_generations", "Generations planned, by dialect and grammar use: "
                                   "none, eager (from the first token) or lazy (woken by a trigger)",
                                   ["model", "dialect", "grammar"], registry=r)
        self.triggered = Counter("oaiproxy_lazy_grammar_triggered", "Generations under a lazy grammar whose "
                                 "answer held a call (a trigger woke the grammar)", ["model", "dialect"], registry=r)
        self.tool_calls = Counter("oaiproxy_tool_calls", "Tool calls the model wrote: returned (validated, to "
                                  "the client or the server-tool loop), cut (dropped: the token limit or a stop "
                                  "string ended them) or refused (failed validation: an error instead)",
                                  ["model", "dialect", "outcome"], registry=r)
        self.queue_wait = Histogram("oaiproxy_queue_wait_seconds", "Time a generation waited for a llama-server "
                                    "slot", buckets=LATENCY_BUCKETS, registry=r)
        self.server_tool = Histogram("oaiproxy_server_tool_duration_seconds", "Server-tool calls the proxy ran, "
                                     "by source and outcome (ok, error)", ["source", "outcome"],
                                     buckets=TOOL_BUCKETS, registry=r)
        self.store_errors = Counter("oaiproxy_store_errors", "Database failures (each a 503 store_unavailable)",
                                    ["backend"], registry=r)
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes...
        self._upstreams: list[UpstreamView] = []
        self._caches: list[PlanCacheView] = []
        r.register(_StateCollector(self))

    def render(self, upstreams: Iterable[UpstreamView] = (), caches: Iterable[PlanCacheView] = ()) -> bytes:
        """The text ``GET /metrics`` answers, with the state read just now."""
        self._upstreams, self._caches = list(upstreams), list(caches)
        return generate_latest(self.registry)

    def _state(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "up": GaugeMetricFamily("oaiproxy_upstream_up", "1 when the llama-server answered /health at this scrape",
                                    labels=["upstream", "role"]),
            "in_flight": GaugeMetricFamily("oaiproxy_upstream_in_flight", "Generations running on the llama-server",
                                           labels=["upstream"]),
            "slots": GaugeMetricFamily("oaiproxy_upstream_slots", "Generations the proxy lets run on it at once",
                                       labels=["upstream"]),
            "queue": GaugeMetricFamily("oaiproxy_queue_depth", "Requests waiting for a slot (--max-queue bounds it)",
                                       labels=["upstream"]),
            "rejected": CounterMetricFamily("oaiproxy_queue_rejected", "Requests refused with 429: the queue was full",
                                            labels=["upstream"]),
            "stalls": CounterMetricFamily("oaiproxy_upstream_stalls", "Generations the stall watchdog ended",
                                          labels=["upstream"]),
            "restarts": GaugeMetricFamily("oaiproxy_upstream_restarts_in_window", "Restarts of a spawned "
                                          "llama-server within the supervisor's window", labels=["upstream"]),
        }
        for u in self._upstreams:
            families["up"].add_metric([u.url, u.role], 1.0 if u.healthy else 0.0)
            families["in_flight"].add_metric([u.url], u.in_flight)
            families["slots"].add_metric([u.url], u.slots)
            families["queue"].add_metric([u.url], u.waiting)
            families["rejected"].add_metric([u.url], u.rejected)
            families["stalls"].add_metric([u.url], u.stalls)
            if u.restarts is not None:
                families["restarts"].add_metric([u.url], u.restarts)
        yield from families.values()
        lookups = CounterMetricFamily("oaiproxy_plan_cache_lookups", "Plans asked of the plan cache: hit (grammar, "
                                      "triggers and stops reused), miss (built and kept) or bypass (a dialect whose "
                                      "plan does not split: built whole)", labels=["model", "result"])
        ratio = GaugeMetricFamily("oaiproxy_plan_cache_hit_ratio", "Hits / (hits + misses) since start",
                                  labels=["model"])
        entries = GaugeMetricFamily("oaiproxy_plan_cache_entries", "Plans kept", labels=["model"])
        size = GaugeMetricFamily("oaiproxy_plan_cache_bytes", "Bytes the kept plans take (estimated)",
                                 labels=["model"])
        bound = GaugeMetricFamily("oaiproxy_plan_cache_max_bytes", "The cache's bound in bytes", labels=["model"])
        for c in self._caches:
            lookups.add_metric([c.model, "hit"], c.hits)
            lookups.add_metric([c.model, "miss"], c.misses)
            lookups.add_metric([c.model, "bypass"], c.bypassed)
            total = c.hits + c.misses
            ratio.add_metric([c.model], c.hits / total if total else 0.0)
            entries.add_metric([c.model], c.entries)
            size.add_metric([c.model], c.bytes)
            bound.add_metric([c.model], c.max_bytes)
        yield from (lookups, ratio, entries, size, bound)


class _StateCollector:
    """The state part of :class:`Metrics`, as prometheus_client's custom collector protocol wants it."""

    def __init__(self, metrics: Metrics):
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # no names registered up front: nothing else on this registry uses these names

    def collect(self) -> Iterator[Metric]:
        return self._metrics._state()


# ---------------------------------------------------------------- the record of one request


@dataclass
class RequestRecord:
    """What one request did, filled in by the stages that served it."""

    id: str
    metrics: Metrics
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    #: the served model that answered (None: the request reached no model)
    model: str | None = None
    dialect: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: int = 0
    #: perf_counter of llama-server's first token
    first_token: float | None = None
    #: None: it went well; else the error's code (a stream's error event included)
    error: str | None = None
    #: a quiet route (health, metrics): its line is logged at debug level
    quiet: bool = False

    def finish(self, route: str, status: int) -> dict[str, Any]:
        """Count the request and log its line; returns the line's fields."""
        now = time.perf_counter()
        model = self.model or ""
        m = self.metrics
        m.requests.labels(route, self.method, model, str(status)).inc()
        m.duration.labels(route, model).observe(now - self.started)
        if self.first_token is not None:
            m.ttft.labels(route, model).observe(self.first_token - self.started)
        outcome = "cancelled" if status == 499 else self.error or ("ok" if status < 400 else "error")
        fields: dict[str, Any] = {
            "request_id": self.id, "method": self.method, "path": self.path, "status": status,
            "model": self.model, "dialect": self.dialect, "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens, "completion_tokens": self.completion_tokens,
            "tool_calls": self.tool_calls,
            "ttft_ms": round((self.first_token - self.started) * 1000, 1) if self.first_token is not None else None,
            "duration_ms": round((now - self.started) * 1000, 1), "outcome": outcome,
        }
        text = " ".join(f"{k}={'-' if v is None else v}" for k, v in fields.items())
        log.log(logging.DEBUG if self.quiet else logging.INFO, "%s", text, extra={"fields": fields})
        return fields


_current: ContextVar[RequestRecord | None] = ContextVar("oaiproxy_request", default=None)


def begin(record: RequestRecord) -> Token[RequestRecord | None]:
    """Make ``record`` the current request's (for the code this task runs next, and the tasks it starts)."""
    return _current.set(record)


def end(token: Token[RequestRecord | None]) -> None:
    _current.reset(token)


def current() -> RequestRecord | None:
    return _current.get()


def note_model(model: str) -> None:
    """The request is for ``model``, one the proxy serves (a client's unknown name never becomes a label)."""
    rec = _current.get()
    if rec is not None:
        rec.model = model


def note_error(code: str) -> None:
    rec = _current.get()
    if rec is not None:
        rec.error = code


def note_generation(model: str, dialect: str, grammar: str) -> None:
    """A generation was planned: ``grammar`` is "none", "eager" or "lazy"."""
    rec = _current.get()
    if rec is not None:
        rec.model, rec.dialect = model, dialect
        rec.metrics.generations.labels(model, dialect, grammar).inc()


def note_tool_calls(model: str, dialect: str, *, returned: int = 0, cut: int = 0, refused: int = 0,
                    lazy: bool = False) -> None:
    """What became of the calls one generation wrote (``lazy``: under a lazy grammar)."""
    rec = _current.get()
    if rec is None:
        return
    rec.tool_calls += returned
    for outcome, n in (("returned", returned), ("cut", cut), ("refused", refused)):
        if n:
            rec.metrics.tool_calls.labels(model, dialect, outcome).inc(n)
    if lazy and returned + cut + refused:
        rec.metrics.triggered.labels(model, dialect).inc()


def note_first_token() -> None:
    rec = _current.get()
    if rec is not None and rec.first_token is None:
        rec.first_token = time.perf_counter()


def note_tokens(prompt: int, completion: int, cached: int) -> None:
    """One generation's tokens, as llama-server's last event reports them."""
    rec = _current.get()
    if rec is None:
        return
    rec.prompt_tokens += prompt
    rec.completion_tokens += completion
    rec.cached_tokens += cached
    model = rec.model or ""
    rec.metrics.prompt_tokens.labels(model).inc(prompt)
    rec.metrics.completion_tokens.labels(model).inc(completion)
    rec.metrics.cached_tokens.labels(model).inc(cached)


def note_queue_wait(seconds: float) -> None:
    rec = _current.get()
    if rec is not None:
        rec.metrics.queue_wait.observe(seconds)


def note_server_tool(source: str, seconds: float, ok: bool) -> None:
    rec = _current.get()
    if rec is not None:
        rec.metrics.server_tool.labels(source, "ok" if ok else "error").observe(seconds)


def note_store_error(backend: str) -> None:
    rec = _current.get()
    if rec is not None:
        rec.metrics.store_errors.labels(backend).inc()


# ---------------------------------------------------------------- logs


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the current request's id, and a request
    line's fields (``--log-format json``, for log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):  # a request's line: its fields, not their text again
            out["message"] = f"{fields.get('method')} {fields.get('path')} {fields.get('status')}"
            out.update(fields)
        else:
            rec = _current.get()
            if rec is not None:
                out["request_id"] = rec.id
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, fmt: str = "text") -> None:
    """The root logger on stderr at ``level``, in ``fmt`` ("text": oaiproxy's readable lines; "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])


__all__ = ["CONTENT_TYPE", "JsonFormatter", "Metrics", "PlanCacheView", "RequestRecord",
           "UpstreamView", "begin", "configure_logging", "current", "end", "new_request_id", "note_error",
           "note_first_token", "note_generation", "note_model", "note_queue_wait", "note_server_tool",
           "note_store_error", "note_tokens", "note_tool_calls", "request_id"]
