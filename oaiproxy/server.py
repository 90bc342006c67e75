"""Assemble and run a proxy from :class:`Settings`: model, llama-server, template, style, HTTP app."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from oaiproxy.api.app import ProxyState, create_app
from oaiproxy.api.chat.serving import ChatEngine
from oaiproxy.api.completions.serving import CompletionEngine
from oaiproxy.api.embeddings.serving import EmbeddingBackend
from oaiproxy.dialects import detect_style, get_style
from oaiproxy.engine import Engine
from oaiproxy.runtime.default_model import default_model_path
from oaiproxy.runtime.gguf_meta import read_metadata
from oaiproxy.runtime.llama_server import (
    ContextPlan,
    ManagedServer,
    ServerOptions,
    find_server_binary,
    mem_available,
    plan_context,
)
from oaiproxy.runtime.models import ModelSet, ServedModel
from oaiproxy.runtime.pool import Member, UpstreamPool, member_name
from oaiproxy.runtime.upstream import Admission, LlamaServerClient
from oaiproxy.server_tools.catalog import ToolCatalog
from oaiproxy.settings import ConfigError, ModelEntry, Settings
from oaiproxy.store import Store
from oaiproxy.templating.chat_template import DEFAULT_TEMPLATE_STOPS, ChatTemplate, TemplateError

log = logging.getLogger("oaiproxy")


@dataclass
class ModelInfo:
    """Where the template and the model's name came from."""

    template: ChatTemplate
    model_id: str
    is_default_template: bool
    #: whether llama-server prepends BOS itself (GGUF `tokenizer.ggml.add_bos_token`, llama.cpp's default: yes)
    adds_bos: bool = True


def _load_template(settings: Settings, source: str | None, bos: str, eos: str, origin: str) -> tuple[ChatTemplate,
                                                                                                     bool]:
    if settings.chat_template_file is not None:
        path = settings.chat_template_file
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--chat-template-file: cannot read {path}: {exc.strerror or exc}") from None
        try:
            return ChatTemplate(text, bos_token=bos, eos_token=eos, name=str(path)), False
        except TemplateError as exc:
            raise ConfigError(f"--chat-template-file: {exc}") from None
    if source:
        try:
            return ChatTemplate(source, bos_token=bos, eos_token=eos, name=origin), False
        except TemplateError as exc:
            log.warning("the chat template from %s does not compile (%s); using the default template", origin, exc)
    else:
        log.info("%s has no chat template; using oaiproxy's default template", origin)
    return ChatTemplate.default(bos_token=bos, eos_token=eos), True


async def resolve_model(settings: Settings, client: LlamaServerClient | None) -> tuple[ModelInfo, Path | None]:
    """Read the chat template and tokens from the GGUF file, or from a running server's ``/props``."""
    if settings.endpoint:
        assert client is not None
        props = await client.props()
        local = Path(props.model_path) if props.model_path else None
        if local is not None and local.is_file():
            # llama-server's /props reports a ChatML fallback for a model without a template;
            # the GGUF itself says whether it has one.
            meta = read_metadata(local)
            template, is_default = _load_template(settings, meta.chat_template, meta.bos_token, meta.eos_token,
                                                  str(local))
            adds_bos = meta.add_bos_token is not False
        else:
            adds_bos = True
            template, is_default = _load_template(settings, props.chat_template, props.bos_token,
                                                  props.eos_token, f"{settings.endpoint[0]}/props")
        model_id = settings.alias or (Path(props.model_path).stem if props.model_path else "llama-server")
        return ModelInfo(template, model_id, is_default, adds_bos), None
    model_path = settings.model[0].path if settings.model else default_model_path()
    meta = read_metadata(model_path)
    template, is_default = _load_template(settings, meta.chat_template, meta.bos_token, meta.eos_token, str(model_path))
    return ModelInfo(template, settings.alias or model_path.stem, is_default,
                     meta.add_bos_token is not False), model_path


def build_engine(settings: Settings, info: ModelInfo, client: LlamaServerClient) -> ChatEngine:
    """The chat engine for a model: its template, the style it speaks (or ``--style``), its stops."""
    try:
        style_cls = get_style(settings.style) if settings.style else detect_style(info.template.source)
    except ValueError as exc:
        raise ConfigError(f"--style: {exc}") from None
    return ChatEngine(Engine.from_settings(
        settings, template=info.template, style=style_cls, client=client, model_id=info.model_id,
        extra_stops=list(DEFAULT_TEMPLATE_STOPS) if info.is_default_template else [], strip_bos=info.adds_bos))


def chat_server_options(settings: Settings, binary: Path, model_path: Path) -> tuple[ServerOptions, ContextPlan]:
    """How to start each chat llama-server on ``model_path``: its context plan (logged) and options."""
    s = settings
    # each replica's KV cache takes its share of the memory
    memory = mem_available() if s.replicas > 1 else -1
    plan = plan_context(read_metadata(model_path), s.parallel, s.ctx_size,
                        available=memory // s.replicas if memory not in (None, -1) else memory)
    (log.warning if plan.capped_by_memory else log.info)("%s%s", plan.describe(),
                                                         f", on each of {s.replicas} replicas"
                                                         if s.replicas > 1 else "")
    return ServerOptions.from_settings(s, binary=binary, model=model_path, ctx_size=plan.ctx_size,
                                       extra_args=s.server_args, rpc=s.rpc), plan


#: what a declared model's client points at until the model is loaded (nothing listens on port 9)
UNLOADED_URL = "http://127.0.0.1:9"

#: a pool member's own queue: the pool never sends it more than its slots (but when failing over)
_MEMBER_QUEUE = 1 << 16


class Proxy:
    """A running proxy: the managed llama-server (unless ``--endpoint``) and the aiohttp app."""

    def __init__(self, settings: Settings):
        self.settings = settings
        #: the one spawned llama-server (None with ``--endpoint`` or ``--replicas`` over 1: the pool has them)
        self.managed: ManagedServer | None = None
        #: every llama-server spawned for the chat model
        self.replicas: list[ManagedServer] = []
        self._rolling: asyncio.Task[list[str]] | None = None
        self.client: LlamaServerClient | None = None
        self.runner: web.AppRunner | None = None
        self.state: ProxyState | None = None
        self.catalog: ToolCatalog | None = None
        self.store: Store | None = None
        self.embedding_backend = EmbeddingBackend.from_settings(settings)
        #: the declared models, with several (``--model`` repeated, ``--models-dir``)
        self.models: ModelSet[ChatEngine, CompletionEngine] | None = None

    async def start(self) -> None:
        s = self.settings
        self.store = await Store.from_settings(s)  # first: a bad --db-url fails before a model loads
        entries = s.model_entries()
        if len(entries) == 1 and not s.endpoint:  # the one model, with its own options from a model: list
            s = s.for_model(entries[0])
        if len(s.endpoint) > 1:
            self.client = await self._attach_pool()
            info, model_path = await resolve_model(s, self.client)
        elif s.endpoint:
            # not ours to restart: a stalled generation is failed and counted, nothing more
            self.client = LlamaServerClient(s.endpoint[0], stall_timeout=s.stall_timeout)
            if not await self.client.health():
                await self.client.close()
                raise ConfigError(f"--endpoint: no healthy llama-server at {s.endpoint[0]} (GET /health failed)")
            info, model_path = await resolve_model(s, self.client)
            props = await self.client.props()
            slots = props.total_slots or s.parallel
            self.client.admission = Admission(slots=slots, max_queue=s.max_queue)
            self.client.context_per_slot = props.context_length
            log.info("context: %s tokens per slot × %d slot%s (llama-server's /props)",
                     props.context_length or "unknown", slots, "s" if slots != 1 else "")
        elif len(entries) > 1:
            await self._declare_models(entries)
            assert self.models is not None
            self.client = self.models.default.client
            model_path = entries[0].path
        else:
            binary = find_server_binary(s.server_bin)
            info, model_path = await resolve_model(s, None)
            assert model_path is not None
            options, plan = chat_server_options(s, binary, model_path)
            self.replicas = [ManagedServer(options) for _ in range(s.replicas)]
            started = await asyncio.gather(*(r.start() for r in self.replicas), return_exceptions=True)
            failed = [e for e in started if isinstance(e, BaseException)]
            if failed:
                raise failed[0]
            if s.replicas == 1:
                self.managed = self.replicas[0]
                self.client = LlamaServerClient(self.managed.url,
                                                admission=Admission(slots=s.parallel, max_queue=s.max_queue),
                                                stall_timeout=s.stall_timeout, on_stall=self.managed.restart_stalled)
                self.client.context_per_slot = plan.per_slot
            else:
                members = []
                for i, replica in enumerate(self.replicas):
                    client = LlamaServerClient(replica.url, admission=Admission(slots=s.parallel,
                                                                                max_queue=_MEMBER_QUEUE),
                                               stall_timeout=s.stall_timeout, on_stall=replica.restart_stalled)
                    client.context_per_slot = plan.per_slot
                    members.append(Member(f"replica-{i}", client, s.parallel, managed=replica))
                self.client = UpstreamPool(members, max_queue=s.max_queue, affinity=s.affinity)
                self.client.start()
                log.info("%d replicas of llama-server, %d slots each, routed as one pool", s.replicas, s.parallel)
        if self.models is not None:
            engine, completions, ids = self.models.default.engine, self.models.default.completions, self.models.ids
        else:
            engine = build_engine(s, info, self.client)
            completions, ids = None, [info.model_id]
            log.info("model %s, style %s, %s template", info.model_id, engine.style.name,
                     "default" if info.is_default_template else "model's own")
        if s.tools is not None:
            self.catalog = await ToolCatalog.open(s.tools)
            clash = sorted(set(self.catalog.snapshot.brains) & set(ids))
            if clash:
                raise ConfigError(f"--tools: brain '{clash[0]}' has the served model's id; rename the brain")
            await self.catalog.start()
            log.info("server tools: %d from %s, brains: %s", len(self.catalog.snapshot.tools), s.tools,
                     ", ".join(self.catalog.snapshot.brains) or "none")
        if self.embedding_backend is not None:
            await self.embedding_backend.start(model_path, self.client)
        self.state = ProxyState(engine=engine, client=self.client, model_ids=ids, managed=self.managed,
                                completions=completions, models=self.models,
                                api_key=s.api_key, cors_origins=s.cors_origin, request_timeout=s.request_timeout,
                                embeddings=self.embedding_backend.engine if self.embedding_backend else None,
                                embedding_managed=self.embedding_backend.managed if self.embedding_backend else None,
                                catalog=self.catalog, store=self.store)
        self.runner = web.AppRunner(create_app(self.state, max_body_bytes=s.max_body_bytes),
                                    handler_cancellation=True, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, s.host, s.port)
        await site.start()
        if s.host not in ("127.0.0.1", "localhost", "::1") and not s.api_key:
            log.warning("listening on %s without --api-key: anyone who can reach it can use it", s.host)
        log.info("oaiproxy serving on http://%s:%d/v1", s.host, self.port)

    async def _declare_models(self, entries: list[ModelEntry]) -> None:
        """Several models (``--model`` repeated, ``--models-dir``): each one's template, dialect and engines now
        (a bad GGUF, template or style fails the start), its llama-server on first use
        (:mod:`oaiproxy.runtime.models`)."""
        s = self.settings
        binary = find_server_binary(s.server_bin)
        served: list[ServedModel[ChatEngine, CompletionEngine]] = []
        specs: dict[str, tuple[Settings, Path]] = {}
        for entry in entries:
            own = s.for_model(entry)
            info, model_path = await resolve_model(own, None)
            assert model_path is not None
            # no server yet: the client is pointed at each llama-server the model gets
            client = LlamaServerClient(UNLOADED_URL, admission=Admission(slots=own.parallel, max_queue=s.max_queue),
                                       stall_timeout=s.stall_timeout)
            engine = build_engine(own, info, client)
            served.append(ServedModel(info.model_id, engine, CompletionEngine(client, info.model_id), client))
            specs[info.model_id] = (own, model_path)
            log.info("model %s (%s), style %s, %s template: loaded on first use", info.model_id, model_path.name,
                     engine.style.name, "default" if info.is_default_template else "model's own")

        async def launch(model: ServedModel[ChatEngine, CompletionEngine]) -> ManagedServer:
            own, model_path = specs[model.id]
            options, plan = chat_server_options(own, binary, model_path)
            managed = ManagedServer(options)
            try:
                await managed.start()
            except BaseException:
                await managed.stop()
                raise
            model.client.base_url = managed.url
            model.client.on_stall = managed.restart_stalled
            model.client.context_per_slot = plan.per_slot
            return managed

        self.models = ModelSet(served, launch, max_loaded=s.max_loaded, load_timeout=s.startup_timeout)
        log.info("%d models (%s), at most %d loaded at once", len(served), ", ".join(self.models.ids), s.max_loaded)

    async def _attach_pool(self) -> UpstreamPool:
        """Several running llama-servers (``--endpoint`` repeated) as one pool; those not answering yet are
        out of rotation until they do, but at least one must answer now."""
        s = self.settings
        clients = [LlamaServerClient(url, stall_timeout=s.stall_timeout) for url in s.endpoint]
        healthy = await asyncio.gather(*(c.health() for c in clients))
        if not any(healthy):
            await asyncio.gather(*(c.close() for c in clients))
            raise ConfigError("--endpoint: no healthy llama-server at any of " + ", ".join(s.endpoint)
                              + " (GET /health failed)")
        members: list[Member] = []
        models: set[str] = set()
        for client, ok in zip(clients, healthy, strict=True):
            slots = s.parallel
            if ok:
                props = await client.props()
                slots = props.total_slots or s.parallel
                client.context_per_slot = props.context_length
                if props.model_path:
                    models.add(Path(props.model_path).name)
            client.admission = Admission(slots=slots, max_queue=_MEMBER_QUEUE)
            member = Member(member_name(client.base_url, {m.name for m in members}), client, slots, up=ok)
            if not ok:
                member.last_error = "no answer to GET /health at start"
                log.warning("--endpoint %s does not answer /health; out of rotation until it does", client.base_url)
            members.append(member)
        if len(models) > 1:
            log.warning("the --endpoint llama-servers serve different models (%s): a pool must serve one",
                        ", ".join(sorted(models)))
        pool = UpstreamPool(members, max_queue=s.max_queue, affinity=s.affinity)
        pool.start()
        log.info("context: %s tokens per slot; %d llama-servers, %d slots in all (their /props)",
                 pool.context_per_slot or "unknown", len(members), sum(m.slots for m in members))
        return pool

    def rolling_restart(self) -> asyncio.Task[list[str]] | None:
        """SIGHUP: restart the spawned replicas one at a time, each drained first (None: no pool of replicas,
        or one restart is under way)."""
        pool = self.client if isinstance(self.client, UpstreamPool) else None
        if pool is None or not any(m.managed for m in pool.members):
            log.info("SIGHUP: no spawned replicas to restart (--replicas N restarts them one at a time)")
            return None
        if self._rolling is not None and not self._rolling.done():
            log.info("SIGHUP: a rolling restart is under way already")
            return None
        self._rolling = asyncio.create_task(pool.rolling_restart(self.settings.request_timeout),
                                            name="rolling restart")
        return self._rolling

    @property
    def port(self) -> int:
        assert self.runner is not None
        for site in self.runner.sites:
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                port: int = server.sockets[0].getsockname()[1]
                return port
        return self.settings.port

    async def stop(self) -> None:
        if self._rolling is not None:
            self._rolling.cancel()
            await asyncio.gather(self._rolling, return_exceptions=True)
        if self.runner is not None:
            await self.runner.cleanup()
        if self.catalog is not None:
            await self.catalog.stop()
        if self.store is not None:
            await self.store.close()
        if self.models is not None:
            await self.models.close()
        elif self.client is not None:
            await self.client.close()
        await asyncio.gather(*(r.stop() for r in self.replicas))
        if self.embedding_backend is not None:
            await self.embedding_backend.stop()


async def serve_forever(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then stop llama-server and exit."""
    proxy = Proxy(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, proxy.rolling_restart)
    try:
        start = asyncio.create_task(proxy.start())
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if start in done:
            start.result()
            await waiter
        else:
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)
        log.info("shutting down")
    finally:
        await proxy.stop()
