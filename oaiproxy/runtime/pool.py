"""One model on several llama-servers: routing, KV-cache affinity, health, failover and draining.

An :class:`UpstreamPool` stands where one :class:`~oaiproxy.runtime.upstream.LlamaServerClient` stands
(the engine, the API routes and the server tools call the same methods), in front of several
:class:`Member` upstreams: replicas oaiproxy spawned (``--replicas N``) and/or running llama-servers
(``--endpoint`` given more than once). One upstream stays a plain client, as before.

* **Admission.** The pool's queue (:class:`PoolAdmission`) admits as many generations as the routable
  upstreams have slots, and queues at most ``--max-queue`` more (then 429), as one client does.
* **Routing.** A generation goes to the upstream that served the longest prefix of its prompt lately
  (its KV cache likely still holds it: llama-server then evaluates only the rest), unless that one has
  no free slot; otherwise to the upstream with the most free slots. The prompt's prefixes are hashed in
  blocks of :data:`AFFINITY_BLOCK` characters, so a conversation's next turn finds the upstream of its
  previous one however long it grew.
* **Health.** Each upstream's ``/health`` is checked every ``health_interval`` seconds; one that fails it,
  or fails a request, is taken out and checked again with backoff (0.5 s doubling to 30 s). A spawned
  replica that is restarting is out until its supervisor has it ready again.
* **Failover.** A generation whose upstream fails before its first event (the client has been sent
  nothing from it) runs again on another upstream; each upstream is tried once. After the first event
  the failure is the request's: the HTTP layer ends the stream with the API's error event. A request
  llama-server refused (400: the prompt is over the context...) is not retried: any upstream would.
* **Draining.** A drained upstream gets no new generation; those it runs finish. A rolling restart (SIGHUP)
  drains the spawned replicas one at a time, restarts each and puts it back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from oaiproxy import metrics
from oaiproxy.errors import APIError, BadRequest, Overloaded, UpstreamUnavailable
from oaiproxy.runtime.upstream import Admission, LlamaServerClient, ServerProps

if TYPE_CHECKING:
    from oaiproxy.runtime.llama_server import ManagedServer

log = logging.getLogger("oaiproxy.pool")

#: characters per hashed prompt block: a prompt's prefixes are compared in steps of this many
AFFINITY_BLOCK = 256
#: blocks of one prompt that are hashed (longer prompts: their first 1 MiB of text decides)
AFFINITY_MAX_BLOCKS = 4096
#: prefix hashes remembered over all upstreams (least recently used out first; ~40 bytes each)
AFFINITY_ENTRIES = 1 << 17
#: backoff of an upstream that is out: the first retry after this, doubling up to MAX_BACKOFF
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0


def prefix_hashes(prompt: Any) -> list[bytes]:
    """The hashes of the prompt's prefixes that end on a block boundary, shortest first.

    Only text prompts (what the engine sends) have them; a token list or anything else gets none.
    """
    if not isinstance(prompt, str) or len(prompt) < AFFINITY_BLOCK:
        return []
    h = hashlib.blake2b(digest_size=12)
    out = []
    for start in range(0, min(len(prompt) // AFFINITY_BLOCK, AFFINITY_MAX_BLOCKS) * AFFINITY_BLOCK, AFFINITY_BLOCK):
        h.update(prompt[start:start + AFFINITY_BLOCK].encode("utf-8", "surrogatepass"))
        out.append(h.copy().digest())
    return out


@dataclass(eq=False)
class Member:
    """One upstream of a pool: its client, the replica oaiproxy spawned (None: ``--endpoint``), its state."""

    name: str
    client: LlamaServerClient
    #: generations the proxy lets run on it at once (its llama-server's slots)
    slots: int
    managed: ManagedServer | None = None
    #: in the pool's rotation: it passed its last health check and did not fail since
    up: bool = True
    #: the operator drained it: no new generation goes to it
    draining: bool = False
    #: generations running on it now, counted by the pool as it routes them
    in_flight: int = 0
    #: generations it was given, and of them those it failed before their first event
    served: int = 0
    failed: int = 0
    #: consecutive failures (health checks or requests); the backoff grows with them
    failures: int = 0
    last_error: str | None = None
    #: when (monotonic) its health is next checked
    next_check: float = 0.0
    #: prompt tokens llama-server evaluated and of them reused from its cache, over its generations
    prompt_tokens: int = 0
    cached_tokens: int = 0

    @property
    def routable(self) -> bool:
        return self.up and not self.draining and (self.managed is None or self.managed.state == "ready")

    @property
    def free(self) -> int:
        return self.slots - self.in_flight

    @property
    def state(self) -> str:
        """``ready``, ``draining`` (still finishing generations), ``drained``, ``down`` or the replica's
        supervisor state (``starting``, ``restarting``, ``failed``)."""
        if self.draining:
            return "draining" if self.in_flight else "drained"
        if self.managed is not None and self.managed.state != "ready":
            return self.managed.state
        return "ready" if self.up else "down"

    def view(self) -> dict[str, Any]:
        """What ``/health`` and the admin routes show of it."""
        managed = self.managed
        return {"name": self.name, "url": self.client.base_url, "state": self.state, "routable": self.routable,
                "in_flight": self.in_flight, "slots": self.slots, "served": self.served,
                "failed_before_first_event": self.failed, "consecutive_failures": self.failures,
                "retry_in_s": (round(max(0.0, self.next_check - time.monotonic()), 1) if not self.up else None),
                "last_error": self.last_error or (managed.last_error if managed else None),
                "managed": managed is not None, "pid": managed.pid if managed else None,
                "restarts_in_window": len(managed.restarts) if managed else 0,
                "context_per_slot": self.client.context_per_slot, "stalls": self.client.stalls,
                "prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens}


def member_name(url: str, taken: set[str]) -> str:
    """An upstream's name in views and admin routes: ``host:port`` of its URL (``-2``... when repeated)."""
    parts = urlsplit(url)
    base = parts.netloc or url
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


class PoolAdmission(Admission):
    """The pool's queue: as many generations as the routable upstreams have slots, ``max_queue`` more waiting.

    ``slots`` follows the pool: the routable upstreams' slots, plus the generations still finishing on those
    out of rotation (drained or failing), which ``active`` counts too. Waiting requests are let in first come
    first served; when no upstream is left they get a 503 at once, as new ones do.
    """

    def __init__(self, pool: UpstreamPool, max_queue: int):
        super().__init__(slots=0, max_queue=max_queue)
        self._pool = pool
        self._waiters: list[asyncio.Future[None]] = []

    def _refusal(self) -> UpstreamUnavailable:
        return UpstreamUnavailable("no llama-server upstream is available: " + self._pool.summary(),
                                   headers={"Retry-After": "2"})

    def update(self) -> None:
        """The pool changed (an upstream in or out, a generation done): let waiting requests in, or refuse them."""
        members = self._pool.members
        # generations still running on an upstream out of rotation (drained, failing) hold no routable slot
        self.slots = (sum(m.slots for m in members if m.routable)
                      + sum(m.in_flight for m in members if not m.routable))
        if not any(m.routable for m in members):
            for fut in self._waiters:
                if not fut.done():
                    fut.set_exception(self._refusal())
            self._waiters.clear()
            return
        while self._waiters and self.active < self.slots:
            fut = self._waiters.pop(0)
            if not fut.done():
                self.active += 1  # handed over: the waiter owns this slot
                fut.set_result(None)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self.update()
        if not self._pool.routable_count():
            raise self._refusal()
        if self.active >= self.slots or self._waiters:
            if self.waiting >= self.max_queue:
                self.rejected += 1
                raise Overloaded(
                    f"server busy: {self.active} requests generating on {self._pool.routable_count()} upstreams and "
                    f"{self.waiting} waiting (queue limit {self.max_queue}); retry shortly",
                    code="queue_full", headers={"Retry-After": "1"})
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            self.waiting += 1
            queued = time.perf_counter()
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self.active -= 1  # admitted just as the client went away: give the slot back
                    self.update()
                elif fut in self._waiters:
                    self._waiters.remove(fut)
                raise
            finally:
                self.waiting -= 1
            metrics.note_queue_wait(time.perf_counter() - queued)
        else:
            self.active += 1
            metrics.note_queue_wait(0.0)
        try:
            yield
        finally:
            self.active -= 1
            self.update()


class UpstreamPool(LlamaServerClient):
    """Several llama-servers on one model, as one client (see the module's docstring).

    It is a :class:`LlamaServerClient` so that everything built on one takes it; what it inherits for
    one server (``base_url``, the session) is not used: each :class:`Member` has its own client.
    """

    def __init__(self, members: list[Member], *, max_queue: int, health_interval: float = 2.0,
                 affinity: bool = True):
        if not members:
            raise ValueError("a pool needs at least one upstream")
        super().__init__(", ".join(m.client.base_url for m in members))
        self.members = members
        self.health_interval = health_interval
        self.affinity = affinity
        self.gate = PoolAdmission(self, max_queue)
        self.admission = self.gate
        known = [m.client.context_per_slot for m in members if m.client.context_per_slot]
        self.context_per_slot = min(known) if known else None
        #: prefix hash -> name of the upstream that last evaluated a prompt starting so
        self._affinity: OrderedDict[bytes, str] = OrderedDict()
        #: generations routed by affinity (the upstream had the prompt's prefix), and the others
        self.affinity_hits = 0
        self.affinity_misses = 0
        self._turn = 0
        self._checker: asyncio.Task[None] | None = None
        for m in members:
            m.client.on_stall = self._stall_handler(m, m.client.on_stall)
        self.gate.update()

    # ------------------------------------------------------------ membership and health

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)

    def routable_count(self) -> int:
        return sum(1 for m in self.members if m.routable)

    def summary(self) -> str:
        return ", ".join(f"{m.name} {m.state}" for m in self.members)

    def _stall_handler(self, member: Member, inner: Any) -> Any:
        def on_stall(reason: str) -> object:
            self.stalls += 1
            self.last_stall = f"{member.name}: {reason}"
            return inner(reason) if inner is not None else False
        return on_stall

    def start(self) -> None:
        """Start checking the upstreams' health in the background (the pool routes without it too)."""
        if self._checker is None:
            self._checker = asyncio.create_task(self._check_forever(), name="upstream health")

    async def _check_forever(self) -> None:
        while True:
            now = time.monotonic()
            due = [m for m in self.members if m.next_check <= now]
            if due:
                await asyncio.gather(*(self.check(m) for m in due))
            await asyncio.sleep(min(0.25, self.health_interval))

    async def check(self, member: Member) -> bool:
        """Check one upstream's ``/health`` now: back in when it answers, out with backoff when not."""
        if member.managed is not None and member.managed.state != "ready":
            # a replica its supervisor is restarting: out (see Member.routable), and looked at again soon
            member.next_check = time.monotonic() + 0.25
            self.gate.update()
            return False
        ok = await member.client.health()
        if ok:
            if not member.up:
                log.info("upstream %s is healthy again; back in rotation", member.name)
                await self._refresh_slots(member)
            member.up = True
            member.next_check = time.monotonic() + self.health_interval
        else:
            self._take_out(member, "failed its health check (GET /health)")
        self.gate.update()
        return ok

    async def check_all(self) -> None:
        """Check every upstream now (``/health`` of the proxy does, so it never shows a stale state)."""
        await asyncio.gather(*(self.check(m) for m in self.members))

    async def _refresh_slots(self, member: Member) -> None:
        """An upstream back in rotation may have restarted with other settings: read its slots again."""
        if member.managed is not None:
            return  # ours: started with the slots the pool knows
        try:
            props = await member.client.props()
        except APIError:
            return
        if props.total_slots:
            member.slots = props.total_slots
            member.client.admission = Admission(slots=props.total_slots, max_queue=1 << 16)
        if props.context_length:
            member.client.context_per_slot = props.context_length

    def _take_out(self, member: Member, why: str) -> None:
        member.failures += 1
        member.last_error = why
        delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (member.failures - 1))
        member.next_check = time.monotonic() + delay
        if member.up:
            log.warning("upstream %s %s; out of rotation, checked again in %.1f s", member.name, why, delay)
        member.up = False
        self.gate.update()

    def drain(self, name: str) -> Member:
        """No new generation for this upstream; its running ones finish. KeyError for an unknown name."""
        member = self.member(name)
        if member is None:
            raise KeyError(name)
        if not member.draining:
            log.info("draining upstream %s (%d generations still running)", name, member.in_flight)
        member.draining = True
        self.gate.update()
        return member

    def resume(self, name: str) -> Member:
        """Undo :meth:`drain`."""
        member = self.member(name)
        if member is None:
            raise KeyError(name)
        if member.draining:
            log.info("upstream %s back in rotation", name)
        member.draining = False
        self.gate.update()
        return member

    async def drained(self, name: str, timeout: float) -> bool:
        """Wait until the drained upstream runs nothing (True), or ``timeout`` passes (False)."""
        member = self.member(name)
        if member is None:
            raise KeyError(name)
        deadline = time.monotonic() + timeout
        while member.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return member.in_flight == 0

    async def rolling_restart(self, timeout: float = 600.0) -> list[str]:
        """Restart the spawned replicas one at a time (SIGHUP): drain one, wait up to ``timeout`` seconds for its
        generations to finish, restart its llama-server, put it back; then the next. The names restarted."""
        done = []
        for member in [m for m in self.members if m.managed is not None]:
            assert member.managed is not None
            was_draining = member.draining
            self.drain(member.name)
            if not await self.drained(member.name, timeout):
                log.warning("upstream %s still runs %d generations after %.0f s; restarting it anyway",
                            member.name, member.in_flight, timeout)
            log.info("restarting upstream %s (rolling restart)", member.name)
            try:
                await member.managed.restart()
            except Exception as exc:  # its supervisor state says failed; the others go on
                log.error("upstream %s did not restart: %s", member.name, exc)
            else:
                member.up, member.failures, member.next_check = True, 0, 0.0
                done.append(member.name)
            finally:
                if not was_draining:
                    self.resume(member.name)
        return done

    # ------------------------------------------------------------ routing

    def _choose(self, hashes: list[bytes], tried: set[str]) -> tuple[Member | None, bool]:
        """The upstream for a generation, and whether affinity chose it; None when every routable one was tried."""
        candidates = [m for m in self.members if m.routable and m.name not in tried]
        if not candidates:
            return None, False
        if self.affinity and hashes:
            by_name = {m.name: m for m in candidates}
            for h in reversed(hashes):  # the longest prefix first
                name = self._affinity.get(h)
                if name is not None and name in by_name:
                    if by_name[name].free > 0:
                        return by_name[name], True
                    break  # saturated: the least loaded instead
        # the most free slots; among equals, in turn (so an idle pool spreads its first requests)
        self._turn += 1
        n = len(candidates)
        order = candidates[self._turn % n:] + candidates[:self._turn % n]
        return max(order, key=lambda m: m.free), False

    def _remember(self, hashes: list[bytes], member: Member) -> None:
        table = self._affinity
        for h in hashes:
            table[h] = member.name
            table.move_to_end(h)
        while len(table) > AFFINITY_ENTRIES:
            table.popitem(last=False)

    def _next(self, hashes: list[bytes], tried: set[str], last_error: APIError | None) -> tuple[Member, bool]:
        """The upstream for the next attempt at a generation, counted in; the last failure when none is left."""
        member, by_affinity = self._choose(hashes, tried)
        if member is None:
            raise last_error or UpstreamUnavailable("no llama-server upstream is available: " + self.summary(),
                                                    headers={"Retry-After": "2"})
        tried.add(member.name)
        member.in_flight += 1
        member.served += 1
        return member, by_affinity

    def _started(self, member: Member, hashes: list[bytes], by_affinity: bool) -> None:
        """The upstream sent its first event: it has the prompt in its cache now."""
        if by_affinity:
            self.affinity_hits += 1
        else:
            self.affinity_misses += 1
        self._remember(hashes, member)
        member.failures = 0

    def _failed(self, member: Member, exc: APIError) -> None:
        member.failed += 1
        self._take_out(member, f"failed a generation: {exc.message}")
        log.warning("upstream %s failed a generation before the client was sent anything of it (%s); %s",
                    member.name, exc.message,
                    "running it on another upstream" if self.routable_count() else "no other upstream left")

    @staticmethod
    def _count(member: Member, last: dict[str, Any]) -> None:
        member.prompt_tokens += int(last.get("tokens_evaluated") or 0)
        member.cached_tokens += int((last.get("timings") or {}).get("cache_n") or 0)

    async def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        """One whole ``/completion`` answer; an upstream failing at any point before it is done (the client has
        nothing yet) is taken out and the generation runs again on another one."""
        hashes = prefix_hashes(body.get("prompt")) if self.affinity else []
        tried: set[str] = set()
        last_error: APIError | None = None
        async with self.gate.slot():
            while True:
                member, by_affinity = self._next(hashes, tried, last_error)
                try:
                    data = await member.client.completion(body)
                except APIError as exc:
                    if isinstance(exc, (BadRequest, Overloaded)):
                        raise  # any upstream would refuse it
                    last_error = exc
                    self._failed(member, exc)
                    continue
                finally:
                    member.in_flight -= 1
                    self.gate.update()
                self._started(member, hashes, by_affinity)
                self._count(member, data)
                return data

    async def completion_stream(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Stream ``/completion`` events from one upstream, failing over to another before the first event."""
        hashes = prefix_hashes(body.get("prompt")) if self.affinity else []
        tried: set[str] = set()
        last_error: APIError | None = None
        async with self.gate.slot():
            while True:
                member, by_affinity = self._next(hashes, tried, last_error)
                started = False
                try:
                    async with aclosing(member.client.completion_stream(body)) as events:
                        async for event in events:
                            if not started:
                                started = True
                                self._started(member, hashes, by_affinity)
                            if event.get("stop"):
                                self._count(member, event)
                            yield event
                    return
                except APIError as exc:
                    if started or isinstance(exc, (BadRequest, Overloaded)):
                        raise  # the client has this upstream's events, or any upstream would refuse it
                    last_error = exc
                    self._failed(member, exc)
                finally:
                    member.in_flight -= 1
                    self.gate.update()

    # ------------------------------------------------------------ the other calls, on any upstream

    async def _on_any(self, call: str, *args: Any, **kwargs: Any) -> Any:
        """A read-only call on the least loaded routable upstream, then on the others if it fails."""
        tried: set[str] = set()
        last_error: APIError | None = None
        while True:
            member, _ = self._choose([], tried)
            if member is None:
                raise last_error or UpstreamUnavailable("no llama-server upstream is available: " + self.summary(),
                                                        headers={"Retry-After": "2"})
            tried.add(member.name)
            try:
                return await getattr(member.client, call)(*args, **kwargs)
            except APIError as exc:
                if isinstance(exc, BadRequest):
                    raise
                last_error = exc
                self._take_out(member, f"failed {call}: {exc.message}")

    async def props(self) -> ServerProps:
        result: ServerProps = await self._on_any("props")
        return result

    async def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        result: list[int] = await self._on_any("tokenize", text, add_special=add_special)
        return result

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._on_any("embeddings", body)
        return result

    async def health(self) -> bool:
        """Whether any upstream is in rotation (as the last checks left them)."""
        return self.routable_count() > 0

    def views(self) -> list[dict[str, Any]]:
        return [m.view() for m in self.members]

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            await asyncio.gather(self._checker, return_exceptions=True)
            self._checker = None
        await asyncio.gather(*(m.client.close() for m in self.members))
        await super().close()


__all__ = ["AFFINITY_BLOCK", "Member", "PoolAdmission", "UpstreamPool", "member_name", "prefix_hashes"]
