"""Several models in one proxy: each declared model is loaded on first use, the least recently used
idle one unloaded beyond ``--max-loaded`` (docs/scaling.md, "Many models").

A declared model is a :class:`ServedModel`: its id, its chat engine and completion engine, and the one
:class:`LlamaServerClient` they talk through, all built once at start-up (the template compiled, the
dialect chosen) and kept while the model is unloaded; loading it starts a llama-server on its GGUF
(the ``launch`` function :mod:`oaiproxy.server` gives, which points the client at it), unloading stops
that process. :class:`ModelSet` decides when: ``async with models.use(model_id) as served`` loads the
model unless it is loaded, waits for a load already under way, and holds the model as in use until the
block ends, so a model with a request running is never the one unloaded. A request holds it for its
whole life (its stream included) through :func:`request_scope` and :meth:`ModelSet.acquire`.

A load that does not finish within ``load_timeout`` (``--startup-timeout``) or fails is a 503 for the
request waiting on it; the next request tries again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from oaiproxy.errors import NotFound, UpstreamUnavailable
from oaiproxy.runtime.llama_server import ManagedServer
from oaiproxy.runtime.upstream import LlamaServerClient

#: the chat engine and the completion engine of a model (the API layer's; this stage does not know them)
E = TypeVar("E")
C = TypeVar("C")

log = logging.getLogger("oaiproxy.models")


class Running(Protocol):
    """A loaded model's llama-server: a :class:`ManagedServer` (or a test's stand-in). One whose ``state``
    is ``failed`` (its supervisor gave up restarting it) is loaded again by the next request for it."""

    async def stop(self) -> None: ...


@dataclass(eq=False)
class ServedModel(Generic[E, C]):
    """One declared model: what serves it (built once), and whether it is loaded now."""

    id: str
    engine: E
    completions: C
    client: LlamaServerClient
    #: its llama-server while loaded (None: unloaded, or loading)
    process: Running | None = None
    #: requests holding it (:meth:`ModelSet.use`), loading ones included
    in_use: int = 0
    #: when it was last used (a counter: the larger, the later)
    last_used: int = 0
    loading: asyncio.Task[Running] | None = None
    loads: int = 0
    unloads: int = 0
    #: why its last load failed (None: it did not)
    last_error: str | None = None
    loaded_at: float | None = None

    @property
    def managed(self) -> ManagedServer | None:
        """Its supervised llama-server, when loaded by the proxy (a stand-in is not one)."""
        return self.process if isinstance(self.process, ManagedServer) else None

    @property
    def state(self) -> str:
        """``loaded``, ``loading`` or ``unloaded``."""
        return "loaded" if self.process is not None else "loading" if self.loading is not None else "unloaded"

    def view(self) -> dict[str, Any]:
        """This model in ``/health``."""
        managed = self.managed
        return {"id": self.id, "state": self.state, "in_use": self.in_use, "loads": self.loads,
                "unloads": self.unloads, "url": self.client.base_url if self.process is not None else None,
                "pid": managed.pid if managed is not None else None,
                "server_state": managed.state if managed is not None else None,
                "last_error": self.last_error}


_SCOPE: ContextVar[AsyncExitStack | None] = ContextVar("oaiproxy_model_scope", default=None)


@asynccontextmanager
async def request_scope() -> AsyncIterator[None]:
    """The span of one request: the models :meth:`ModelSet.acquire` gives it are held until it ends."""
    async with AsyncExitStack() as stack:
        token = _SCOPE.set(stack)
        try:
            yield
        finally:
            _SCOPE.reset(token)


class ModelSet(Generic[E, C]):
    """The declared models, at most ``max_loaded`` of them loaded at once (the first is the default).

    ``launch`` loads one: it starts the model's llama-server, points the model's client at it, returns it."""

    def __init__(self, models: list[ServedModel[E, C]], launch: Callable[[ServedModel[E, C]], Awaitable[Running]],
                 *, max_loaded: int, load_timeout: float):
        if not models:
            raise ValueError("a model set needs at least one model")
        self.models = {m.id: m for m in models}
        self.default = models[0]
        self.max_loaded = max_loaded
        self.load_timeout = load_timeout
        self._launch = launch
        self._clock = itertools.count(1)
        #: held while a load is decided (and an idle model unloaded for it); not while a model loads
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    @property
    def ids(self) -> list[str]:
        return list(self.models)

    def get(self, model_id: str | None) -> ServedModel[E, C]:
        """The model named ``model_id`` (None: the default), else a 404 listing the ids."""
        if model_id is None:
            return self.default
        model = self.models.get(model_id)
        if model is None:
            raise NotFound(f"model '{model_id}' does not exist; this server serves "
                           + ", ".join(f"'{m}'" for m in self.models), param="model", code="model_not_found")
        return model

    def loaded(self) -> list[ServedModel[E, C]]:
        """The models loaded now, least recently used first."""
        return sorted((m for m in self.models.values() if m.process is not None), key=lambda m: m.last_used)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    @asynccontextmanager
    async def use(self, model_id: str | None) -> AsyncIterator[ServedModel[E, C]]:
        """The model, loaded, held as in use until the block ends (None: the default model)."""
        model = self.get(model_id)
        model.in_use += 1  # first: a model someone waits for is not unloaded for another
        try:
            await self._ready(model, asyncio.get_running_loop().time() + self.load_timeout)
            model.last_used = next(self._clock)
            yield model
        finally:
            model.in_use -= 1
            model.last_used = next(self._clock)
            self._notify()

    async def acquire(self, model_id: str | None) -> ServedModel[E, C]:
        """:meth:`use` held until the current :func:`request_scope` ends."""
        stack = _SCOPE.get()
        if stack is None:
            raise RuntimeError("ModelSet.acquire outside a request_scope")
        return await stack.enter_async_context(self.use(model_id))

    async def _ready(self, model: ServedModel[E, C], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        if _failed(model.process):
            async with self._lock:
                if _failed(model.process):
                    await self._unload(model, why="to load it again: its llama-server failed")
        while model.process is None:
            if model.loading is None:
                changed = self._changed
                if not await self._claim(model):  # every loaded model has a request running: wait for one
                    busy = ", ".join(f"'{m.id}'" for m in self.loaded())
                    try:
                        async with asyncio.timeout_at(deadline):
                            await changed.wait()
                    except TimeoutError:
                        raise UpstreamUnavailable(
                            f"model '{model.id}' cannot be loaded: the {self.max_loaded} model(s) loaded ({busy}) "
                            f"all had requests running for {self.load_timeout:g} s (--max-loaded "
                            f"{self.max_loaded})", code="model_busy", headers={"Retry-After": "5"}) from None
                continue
            task = model.loading
            try:
                await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise UpstreamUnavailable(f"model '{model.id}' is still loading after {self.load_timeout:g} s "
                                          "(--startup-timeout); retry shortly", code="model_loading",
                                          headers={"Retry-After": "5"}) from None
            except asyncio.CancelledError:
                if task.cancelled() and not _cancelling():
                    raise UpstreamUnavailable(f"model '{model.id}' was not loaded: the proxy is stopping",
                                              code="model_load_failed") from None
                raise
            except Exception as exc:
                raise UpstreamUnavailable(f"model '{model.id}' could not be loaded: {exc}",
                                          code="model_load_failed", headers={"Retry-After": "5"}) from None

    async def _claim(self, model: ServedModel[E, C]) -> bool:
        """Start loading ``model`` unless it is loaded or loading already; False: no room, every loaded model
        has a request running."""
        async with self._lock:
            if model.process is not None or model.loading is not None:
                return True
            if not await self._make_room(model):
                return False
            model.loading = asyncio.create_task(self._load(model), name=f"load model {model.id}")
            # retrieved here too: the requests that waited for it may all have timed out
            model.loading.add_done_callback(_retrieve)
            return True

    async def _make_room(self, model: ServedModel[E, C]) -> bool:
        """With the lock held: unload idle models until ``model`` may load; False when none is idle."""
        while sum(1 for m in self.models.values() if m.process is not None or m.loading is not None) \
                >= self.max_loaded:
            idle = [m for m in self.loaded() if m.in_use == 0 and m is not model]
            if not idle:
                return False
            await self._unload(idle[0], why=f"to load '{model.id}' (--max-loaded {self.max_loaded})")
        return True

    async def _load(self, model: ServedModel[E, C]) -> Running:
        started = time.monotonic()
        log.info("loading model %s", model.id)
        try:
            process = await self._launch(model)
        except BaseException as exc:
            model.last_error = str(exc) or type(exc).__name__
            log.error("model %s could not be loaded: %s", model.id, model.last_error)
            raise
        else:
            model.process, model.loaded_at, model.last_error = process, time.time(), None
            model.loads += 1
            log.info("model %s loaded in %.1f s", model.id, time.monotonic() - started)
            return process
        finally:
            model.loading = None
            self._notify()

    async def _unload(self, model: ServedModel[E, C], why: str) -> None:
        process, model.process = model.process, None
        if process is None:
            return
        log.info("unloading model %s %s", model.id, why)
        model.unloads += 1
        model.loaded_at = None
        try:
            await process.stop()
        finally:
            self._notify()

    async def unload(self, model_id: str) -> bool:
        """Unload a model now unless a request holds it (False: it was not loaded, or is in use)."""
        model = self.get(model_id)
        async with self._lock:
            if model.process is None or model.in_use:
                return False
            await self._unload(model, why="on request")
            return True

    async def close(self) -> None:
        """Stop every load under way and every loaded model, and close the clients."""
        tasks = [m.loading for m in self.models.values() if m.loading is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for model in self.models.values():
            await self._unload(model, why="as the proxy stops")
        await asyncio.gather(*(m.client.close() for m in self.models.values()))

    def views(self) -> list[dict[str, Any]]:
        return [m.view() for m in self.models.values()]


def _failed(process: Running | None) -> bool:
    return getattr(process, "state", None) == "failed"


def _retrieve(task: asyncio.Task[Running]) -> None:
    if not task.cancelled():
        task.exception()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


__all__ = ["ModelSet", "Running", "ServedModel", "request_scope"]

