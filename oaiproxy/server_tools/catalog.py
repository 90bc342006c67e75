"""The loaded server tools and brains, reloaded without a restart and swapped atomically.

A request takes :attr:`ToolCatalog.snapshot` once and uses only it: every reload builds a whole new
:class:`Snapshot` and assigns it in one step, so no request ever sees half of a reload. Reloads are
serialized by one lock. What triggers them (after :meth:`ToolCatalog.start`):

* the tools file and OpenAPI spec files are polled (mtime and size) every ``watch_interval`` seconds;
* a spec served over http(s), and an MCP server, are re-read every ``refresh_interval`` seconds when set;
* each MCP server is listened to on a session of its own (2026-07-28 ``subscriptions/listen`` with
  ``tools_list_changed``); an announced change re-lists that source. A dropped listener reconnects
  with backoff and re-lists, since changes may have been missed meanwhile. A server on an older
  protocol (no ``subscriptions/listen``) is re-listed only by its ``refresh_interval``: its
  ``notifications/tools/list_changed`` would need a message handler on the session, which
  :func:`mcp_source.connect` does not take.

A tools file that no longer parses keeps the whole old snapshot; a source that fails to reload keeps
its old tools, with the error in its status. Nothing here crashes the proxy: every failure is logged
(WARNING, naming the source) and listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import ValidationError

from oaiproxy.server_tools.base import ServerTool, SourceError
from oaiproxy.server_tools.config import Brain, MCPSource, OpenAPISource, ToolsFile
from oaiproxy.server_tools.mcp_source import _failure, _origin, connect, load_mcp
from oaiproxy.server_tools.openapi import LoadedSource, display_url, load_openapi
from oaiproxy.settings import ConfigError

log = logging.getLogger("oaiproxy.server_tools")

SourceConfig = OpenAPISource | MCPSource
#: (mtime in ns, size) of a watched file, or None while it is missing
Stamp = tuple[int, int] | None

#: the longest wait between reconnects of a dropped MCP listener
MAX_BACKOFF = 60.0
#: how long stop() waits for background tasks (a stdio server being ended) before it gives up on them
STOP_TIMEOUT = 10.0


# ------------------------------------------------------------------ the tools file


def _loc(loc: Iterable[int | str]) -> str:
    """A pydantic error location as the file spells it: ``sources[0].namespace``, ``brains.b.tools[1]``.

    The discriminator's tag (``openapi``/``mcp``) pydantic puts after a source's index is left out.
    """
    out = ""
    parts = list(loc)
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i == 2 and parts[0] == "sources" and part in ("openapi", "mcp"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def read_tools_file(path: Path) -> ToolsFile:
    """The ``--tools`` file (YAML or JSON), validated; a bad one is a :class:`ConfigError` naming the field.

    A relative OpenAPI ``url`` that is a file path is taken from the tools file's directory, so the file
    means the same whatever the proxy's working directory. MCP ``command``/``args`` are left as given:
    a command is looked up on PATH as a shell would.
    """
    where = f"--tools: {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML or JSON: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nests too deeply") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with 'sources', 'brains' and 'watch_interval', "
                          f"not {type(data).__name__}")
    try:
        parsed = ToolsFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        loc = _loc(err["loc"])
        raise ConfigError(f"{where}: {loc}: {msg}" if loc else f"{where}: {msg}") from None
    base = path.absolute().parent
    sources: list[SourceConfig] = []
    for src in parsed.sources:
        if isinstance(src, OpenAPISource) and not src.url.startswith(("http://", "https://")):
            src = src.model_copy(update={"url": str(base / Path(src.url).expanduser())})
        sources.append(src)
    return parsed.model_copy(update={"sources": sources})


def _stamp(path: str | Path) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _is_file(cfg: SourceConfig) -> bool:
    return isinstance(cfg, OpenAPISource) and not cfg.url.startswith(("http://", "https://"))


# ------------------------------------------------------------------ snapshots


@dataclass(frozen=True)
class SourceStatus:
    """What a listing says of one source (never a secret)."""

    name: str
    kind: str
    origin: str
    #: when its tools were last loaded (UNIX time), None if they never were
    loaded_at: float | None
    #: why its last load failed (its older tools, if any, are still offered), or why its tools are left out
    error: str | None
    #: its tool names, as offered
    tools: list[str]
    #: operations or tools left out, with why
    skipped: dict[str, str]
    details: dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """One consistent view of the catalog; a request takes ``catalog.snapshot`` once and uses only it."""

    brains: Mapping[str, Brain]
    #: by tool name, over all loaded sources
    tools: Mapping[str, ServerTool]
    #: by source name, in the file's order
    sources: Mapping[str, SourceStatus]
    #: when this snapshot was built (UNIX time)
    built_at: float = 0.0

    def tools_for(self, refs: list[str]) -> list[ServerTool]:
        """The tools ``refs`` name (namespaces or tool names; empty: all), each once, in source order.

        A ref that names nothing loaded now (its source failed, or the tool is gone) gives nothing.
        """
        wanted = set(refs)
        out: list[ServerTool] = []
        for name, status in self.sources.items():
            for tool_name in status.tools:
                if tool_name in self.tools and (not refs or name in wanted or tool_name in wanted):
                    out.append(self.tools[tool_name])
        return out


EMPTY = Snapshot(brains=MappingProxyType({}), tools=MappingProxyType({}), sources=MappingProxyType({}))


@dataclass
class _State:
    """One source's last good load and last attempt (kept between reloads)."""

    cfg: SourceConfig
    loaded: LoadedSource | None = None
    loaded_at: float | None = None
    error: str | None = None
    #: monotonic time of the last attempt (for refresh_interval)
    attempted: float = 0.0
    #: the spec file's stamp at the last attempt (file sources)
    stamp: Stamp = None


async def _load(cfg: SourceConfig) -> LoadedSource:
    return await (load_openapi(cfg) if isinstance(cfg, OpenAPISource) else load_mcp(cfg))


async def _attempt(state: _State) -> None:
    """Load the source once into ``state``: new tools, or the error (old tools kept); never raises."""
    cfg = state.cfg
    state.attempted = time.monotonic()
    if _is_file(cfg):
        assert isinstance(cfg, OpenAPISource)
        state.stamp = _stamp(cfg.url)
    try:
        loaded = await _load(cfg)
    except SourceError as exc:
        state.error = str(exc)
    except Exception as exc:  # a bug or a surprise in a library: listed, never a crash
        state.error = f"source {cfg.namespace!r}: unexpected failure while loading: {_failure(exc)}"
        log.debug("source %s", cfg.namespace, exc_info=True)
    else:
        state.loaded, state.loaded_at, state.error = loaded, time.time(), None
        return
    kept = f" (its {len(state.loaded.tools)} earlier tools are kept)" if state.loaded else ""
    log.warning("server tools: %s%s", state.error, kept)


def _leaf(exc: BaseException) -> BaseException:
    """The first leaf of nested exception groups (what actually failed)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _origin_of(cfg: SourceConfig) -> str:
    return display_url(cfg.url) if isinstance(cfg, OpenAPISource) else _origin(cfg)


def _build(file: ToolsFile, states: Mapping[str, _State]) -> tuple[Snapshot, list[str]]:
    """The snapshot of ``states`` in the file's order, and its errors. A tool name given by an earlier
    source is a load error of the later one (named with both), whose tools are all left out."""
    tools: dict[str, ServerTool] = {}
    statuses: dict[str, SourceStatus] = {}
    errors: list[str] = []
    for cfg in file.sources:
        state = states[cfg.namespace]
        loaded = state.loaded
        error = state.error
        names: list[str] = []
        if loaded is not None:
            clashes = [(t.spec.name, tools[t.spec.name].source) for t in loaded.tools if t.spec.name in tools]
            if clashes:
                clash = "; ".join(f"{name!r} is also a tool of source {other!r}" for name, other in clashes)
                error = f"source {cfg.namespace!r}: tool names must be unique over all sources: {clash}"
                log.warning("server tools: %s; its tools are left out", error)
            else:
                for t in loaded.tools:
                    tools[t.spec.name] = t
                names = [t.spec.name for t in loaded.tools]
        if error:
            errors.append(error)
        statuses[cfg.namespace] = SourceStatus(
            name=cfg.namespace, kind=loaded.kind if loaded else cfg.type,
            origin=loaded.origin if loaded else _origin_of(cfg), loaded_at=state.loaded_at, error=error,
            tools=names, skipped=dict(loaded.skipped) if loaded else {},
            details=dict(loaded.details) if loaded else {})
    snap = Snapshot(brains=MappingProxyType(dict(file.brains)), tools=MappingProxyType(tools),
                    sources=MappingProxyType(statuses), built_at=time.time())
    return snap, errors


# ------------------------------------------------------------------ the catalog


class ToolCatalog:
    """The server tools and brains of one ``--tools`` file, kept current while the proxy runs."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        #: replaced as a whole on each (partial) reload; read it once per request
        self.snapshot: Snapshot = EMPTY
        self._file = ToolsFile()
        self._file_stamp: Stamp = None
        self._states: dict[str, _State] = {}
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._listeners: dict[str, tuple[MCPSource, asyncio.Task[None]]] = {}
        self._started = False

    @classmethod
    async def open(cls, path: Path) -> ToolCatalog:
        """The catalog of ``path``, every source loaded (a failing one listed with its error).

        Raises :class:`ConfigError` for a bad tools file.
        """
        catalog = cls(path=path)
        stamp = _stamp(path)
        catalog._file = read_tools_file(path)
        catalog._file_stamp = stamp
        await catalog._load_all(catalog._file)
        return catalog

    async def reload(self) -> list[str]:
        """Re-read the tools file and every source now; the error messages (empty: all loaded).

        A tools file that is now bad keeps the whole old snapshot (its error is the one message).
        """
        if self.path is None:
            return []
        async with self._lock:
            stamp = _stamp(self.path)
            self._file_stamp = stamp  # a broken file is reported once, not at every poll
            try:
                file = read_tools_file(self.path)
            except ConfigError as exc:
                log.warning("server tools: %s; the tools loaded before are kept", exc)
                return [str(exc)]
            errors = await self._load_all(file)
            log.info("server tools: reloaded %s: %d sources, %d tools, %d brains", self.path,
                     len(file.sources), len(self.snapshot.tools), len(file.brains))
            if self._started:
                self._sync_listeners()
            return errors

    async def _load_all(self, file: ToolsFile) -> list[str]:
        """Load every source of ``file`` (at once) and swap in the result; keeps old tools on failures."""
        states: dict[str, _State] = {}
        for cfg in file.sources:
            old = self._states.get(cfg.namespace)
            if old is None or old.cfg.type != cfg.type:  # a source of another kind keeps nothing of the old one
                old = None
            states[cfg.namespace] = _State(cfg=cfg, loaded=old.loaded if old else None,
                                           loaded_at=old.loaded_at if old else None)
        await asyncio.gather(*(_attempt(s) for s in states.values()))
        snap, errors = _build(file, states)
        self._file, self._states, self.snapshot = file, states, snap
        return errors

    async def reload_source(self, name: str) -> str | None:
        """Reload one source now; its error (None: loaded). A name no longer in the file does nothing."""
        async with self._lock:
            state = self._states.get(name)
            if state is None:
                return None
            await _attempt(state)
            self.snapshot, _ = _build(self._file, self._states)
            return self.snapshot.sources[name].error

    # -------------------------------------------------------------- background work

    async def start(self) -> None:
        """Start watching the tools file and spec files, the refresh timers and the MCP listeners."""
        if self._started:
            return
        self._started = True
        self._watcher = asyncio.create_task(self._watch(), name="oaiproxy-tools-watcher")
        self._sync_listeners()

    async def stop(self) -> None:
        """Cancel the background tasks and close their sessions (bounded: a task that will not end is left)."""
        self._started = False
        tasks = [t for _, t in self._listeners.values()]
        if self._watcher is not None:
            tasks.append(self._watcher)
        self._watcher = None
        self._listeners.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            if pending:
                log.warning("server tools: %d background tasks did not end within %g s", len(pending),
                            STOP_TIMEOUT)

    def _due(self, state: _State, now: float) -> bool:
        cfg = state.cfg
        if _is_file(cfg):
            assert isinstance(cfg, OpenAPISource)
            return _stamp(cfg.url) != state.stamp
        return cfg.refresh_interval is not None and now - state.attempted >= cfg.refresh_interval

    async def _watch(self) -> None:
        """Every ``watch_interval``: a changed tools file reloads all; a changed spec file or a due
        refresh reloads that source. A failure is logged and the watching goes on."""
        while True:
            await asyncio.sleep(self._file.watch_interval)
            try:
                if self.path is not None and _stamp(self.path) != self._file_stamp:
                    await self.reload()
                    continue
                now = time.monotonic()
                for name, state in list(self._states.items()):
                    if self._due(state, now):
                        await self.reload_source(name)
            except Exception as exc:
                log.warning("server tools: the watcher failed (it goes on): %s", _failure(exc))

    def _sync_listeners(self) -> None:
        """One listener per MCP source of the file: new ones started, changed or removed ones cancelled."""
        wanted = {cfg.namespace: cfg for cfg in self._file.sources if isinstance(cfg, MCPSource)}
        for name, (cfg, task) in list(self._listeners.items()):
            if wanted.get(name) != cfg:
                task.cancel()
                del self._listeners[name]
        for name, cfg in wanted.items():
            if name not in self._listeners:
                task = asyncio.create_task(self._listen(cfg), name=f"oaiproxy-mcp-listener-{name}")
                self._listeners[name] = (cfg, task)

    async def _listen(self, cfg: MCPSource) -> None:
        """Keep a session to the server subscribed to its tool-list changes; re-list the source on each.

        A server on an older protocol (no ``subscriptions/listen``) or one that does not serve it ends
        this listener (its ``refresh_interval``, if set, still re-lists it). Any other failure reconnects
        with backoff; after a reconnect the source is re-listed, since a change may have been missed, as
        it is when its last load failed (a server that was down at startup is picked up once it is up).
        """
        from mcp.client.subscriptions import ListenNotSupportedError
        from mcp.shared.exceptions import MCPError
        from mcp_types import METHOD_NOT_FOUND

        name = cfg.namespace
        backoff = 1.0
        connected_before = False
        while True:
            try:
                async with contextlib.AsyncExitStack() as stack:
                    async with asyncio.timeout(cfg.timeout):
                        client = await stack.enter_async_context(connect(cfg))
                        sub = await stack.enter_async_context(client.listen(tools_list_changed=True))
                    log.info("server tools: source %r: listening for tool-list changes", name)
                    status = self.snapshot.sources.get(name)
                    if connected_before or status is None or status.error:
                        await self.reload_source(name)  # a change may have been missed, or it failed before
                    connected_before = True
                    backoff = 1.0
                    async for _event in sub:
                        log.info("server tools: source %r announced a tool-list change; re-listing", name)
                        await self.reload_source(name)
                reason = "the server ended the subscription"
            except Exception as exc:  # the SDK's task groups wrap what happened in exception groups
                leaf = _leaf(exc)
                if isinstance(leaf, ListenNotSupportedError) or (
                        isinstance(leaf, MCPError) and leaf.code == METHOD_NOT_FOUND):
                    version = leaf.negotiated_version if isinstance(leaf, ListenNotSupportedError) else None
                    log.warning("server tools: source %r does not serve subscriptions/listen%s: its tool-list "
                                "changes are not followed%s", name, f" (it speaks MCP {version})" if version else "",
                                "" if cfg.refresh_interval else "; set refresh_interval to re-list it")
                    return
                if isinstance(leaf, TimeoutError):
                    reason = f"no subscription within {cfg.timeout:g} s"
                elif isinstance(leaf, KeyError):  # an env or header variable that is not set
                    reason = str(leaf.args[0])
                else:
                    reason = _failure(leaf)
            log.warning("server tools: source %r: tool-list listener lost (%s); retrying in %g s",
                        name, reason, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    # -------------------------------------------------------------- listing

    def listing(self) -> dict[str, Any]:
        """``GET /v1/tools``: the sources, tools and brains of the current snapshot (never a secret)."""
        snap = self.snapshot
        return {
            "object": "list",
            "file": str(self.path) if self.path else None,
            "loaded_at": snap.built_at,
            "sources": [{"name": s.name, "kind": s.kind, "origin": s.origin, "loaded_at": s.loaded_at,
                         "error": s.error, "tools": list(s.tools), "skipped": dict(s.skipped),
                         "details": dict(s.details)} for s in snap.sources.values()],
            "data": [{"name": t.spec.name, "description": t.spec.description, "source": t.source,
                      "parameters": t.spec.parameters} for t in snap.tools_for([])],
            "brains": [{"name": name, "description": b.description,
                        "tools": [t.spec.name for t in snap.tools_for(b.tools)],
                        "max_iterations": b.max_iterations, "history_depth": b.history_depth,
                        "tool_choice": b.tool_choice, "has_system_prompt": bool(b.system_prompt)}
                       for name, b in snap.brains.items()],
        }


__all__ = ["Snapshot", "SourceStatus", "ToolCatalog", "read_tools_file"]
