"""Embeddings (``POST /v1/embeddings``) through a second llama-server started with ``--embeddings``.

Chat generation and embeddings want different llama-server settings (pooling,
embedding mode), so they get different servers; this module only talks to the
embedding one. llama-server always returns floats here: base64 is encoded by
the proxy, as OpenAI does it (little-endian float32), so both formats carry the
very same numbers.
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oaiproxy.api.embeddings.protocol import Embedding, EmbeddingInput, EmbeddingList, EmbeddingRequest, EmbeddingUsage
from oaiproxy.errors import BadRequest, UpstreamError
from oaiproxy.runtime.upstream import LlamaServerClient

if TYPE_CHECKING:
    from oaiproxy.runtime.llama_server import ManagedServer
    from oaiproxy.settings import Settings

#: the most inputs one request may carry (OpenAI's own limit)
MAX_INPUTS = 2048
#: context of the spawned embedding server unless --ctx-size is given: small on purpose, since each input
#: is bounded by its batch (512 tokens) anyway; the chat server's default (the model's own) would only cost memory
EMBEDDING_CTX_SIZE = 4096


class EmbeddingsNotConfigured(BadRequest):
    """400, as vLLM and llama-server answer a model that cannot embed: the request is fine, this server is not."""

    def __init__(self) -> None:
        super().__init__("embeddings are not enabled on this server: start oaiproxy with --embedding-model PATH "
                         "(or 'default', or 'chat' for the chat model) or --embedding-endpoint URL",
                         param="model", code="embeddings_not_configured")


def split_inputs(value: EmbeddingInput) -> list[str | list[int]]:
    """OpenAI's four input shapes as a list of single inputs, refusing empty ones by index."""
    if isinstance(value, str):
        items: list[Any] = [value]
        names = ["input"]
    elif value and all(isinstance(v, int) for v in value):
        items, names = [list(value)], ["input"]
    else:
        items, names = list(value), [f"input[{i}]" for i in range(len(value))]
    if not items:
        raise BadRequest("'input' must not be an empty list", param="input", code="invalid_value")
    if len(items) > MAX_INPUTS:
        raise BadRequest(f"'input' has {len(items)} items; the limit is {MAX_INPUTS}", param="input",
                         code="invalid_value")
    for name, item in zip(names, items, strict=True):
        if (isinstance(item, str) and not item) or (isinstance(item, list) and not item):
            raise BadRequest(f"'{name}' must not be empty", param=name, code="invalid_value")
        if isinstance(item, list) and any(t < 0 for t in item):
            raise BadRequest(f"'{name}' holds a negative token id", param=name, code="invalid_value")
    return items


def encode_base64(vector: list[float]) -> str:
    """OpenAI's base64 format: the raw little-endian float32 array."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def decode_base64(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


class EmbeddingEngine:
    """Serves embeddings from one llama-server running in embedding mode."""

    def __init__(self, client: LlamaServerClient, model_id: str):
        self.client = client
        self.model_id = model_id
        #: learnt from the first answer, so a wrong ``dimensions`` is refused before any work
        self.dimensions: int | None = None

    def _check_dimensions(self, wanted: int | None, native: int | None) -> None:
        if wanted is not None and native is not None and wanted != native:
            raise BadRequest(f"'dimensions' {wanted} is not supported: {self.model_id} produces {native}-dimensional "
                             "embeddings and cannot shorten them", param="dimensions",
                             code="unsupported_parameter")

    async def embed(self, req: EmbeddingRequest) -> EmbeddingList:
        items = split_inputs(req.input)
        self._check_dimensions(req.dimensions, self.dimensions)
        try:
            data = await self.client.embeddings({"input": items, "encoding_format": "float"})
        except BadRequest as exc:
            exc.param = exc.param or "input"
            raise
        except UpstreamError as exc:
            # llama-server answers 500 for an input over its batch size; it is the input that is wrong
            if "too large to process" in exc.message or "context size" in exc.message:
                raise BadRequest(f"an input is too long for the embedding server: {exc.message}", param="input",
                                 code="input_too_long") from None
            raise
        rows = sorted(data.get("data") or [], key=lambda r: r.get("index", 0))
        if len(rows) != len(items) or not all(isinstance(r.get("embedding"), list) for r in rows):
            raise UpstreamError(f"llama-server returned {len(rows)} embeddings for {len(items)} inputs")
        self.dimensions = len(rows[0]["embedding"])
        self._check_dimensions(req.dimensions, self.dimensions)
        out = []
        for i, row in enumerate(rows):
            vector = [float(x) for x in row["embedding"]]
            out.append(Embedding(index=i, embedding=encode_base64(vector) if req.encoding_format == "base64"
                                 else vector))
        tokens = int((data.get("usage") or {}).get("prompt_tokens") or 0)
        return EmbeddingList(data=out, model=self.model_id,
                             usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens))


class EmbeddingBackend:
    """Where embeddings come from: a llama-server the proxy spawns and supervises, or one it is pointed at.

    Built from :class:`Settings` (``None`` when embeddings are not configured);
    :meth:`stop` is safe at any point, so a proxy that fails half-way through
    start-up still takes the embedding server down.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.managed: ManagedServer | None = None
        self.client: LlamaServerClient | None = None
        self.engine: EmbeddingEngine | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddingBackend | None:
        if not settings.embedding_model and not settings.embedding_endpoint:
            return None
        return cls(settings)

    async def _model_path(self, chat_model: Path | None, chat_client: LlamaServerClient | None) -> Path:
        from oaiproxy.runtime.default_model import default_model_path
        from oaiproxy.settings import ConfigError

        choice = self.settings.embedding_model
        assert choice is not None
        if choice == "default":
            return default_model_path()
        if choice == "chat":
            if chat_model is None and chat_client is not None:
                served = (await chat_client.props()).model_path
                chat_model = Path(served) if served else None
            if chat_model is None or not chat_model.is_file():
                raise ConfigError("--embedding-model chat: the chat model's GGUF file is not readable here; "
                                  "give its path instead")
            return chat_model
        path = Path(choice).expanduser()
        if not path.is_file():
            raise ConfigError(f"--embedding-model: {path}: no such file")
        return path

    async def start(self, chat_model: Path | None = None, chat_client: LlamaServerClient | None = None) -> None:
        from oaiproxy.runtime.gguf_meta import read_metadata
        from oaiproxy.runtime.llama_server import ManagedServer, ServerOptions, find_server_binary
        from oaiproxy.settings import ConfigError

        s = self.settings
        if s.embedding_endpoint:
            self.client = LlamaServerClient(s.embedding_endpoint)
            if not await self.client.health():
                raise ConfigError(f"--embedding-endpoint: no healthy llama-server at {s.embedding_endpoint} "
                                  "(GET /health failed)")
            served = (await self.client.props()).model_path
            self.engine = EmbeddingEngine(self.client, Path(served).stem if served else "embeddings")
            return
        path = await self._model_path(chat_model, chat_client)
        read_metadata(path)  # a clear GGUFError now rather than a llama-server crash log later
        pooling = [] if s.embedding_pooling == "model" else ["--pooling", s.embedding_pooling]
        self.managed = ManagedServer(ServerOptions.from_settings(
            s, binary=find_server_binary(s.server_bin), model=path, ctx_size=s.ctx_size or EMBEDDING_CTX_SIZE,
            extra_args=["--embeddings", *pooling]))
        await self.managed.start()
        self.client = LlamaServerClient(self.managed.url)
        self.engine = EmbeddingEngine(self.client, path.stem)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self.managed is not None:
            await self.managed.stop()
