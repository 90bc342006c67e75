"""``POST /v1/embeddings``: the body checked, then handed to the embedding server's
:class:`oaiproxy.api.embeddings.serving.EmbeddingEngine`; :mod:`oaiproxy.api.app` sends the reply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from oaiproxy.api.embeddings.protocol import EmbeddingRequest
from oaiproxy.api.embeddings.serving import EmbeddingsNotConfigured
from oaiproxy.api.protocol import parse_request
from oaiproxy.errors import NotFound

if TYPE_CHECKING:
    from oaiproxy.api.app import ProxyState, Reply


async def embeddings(request: web.Request, state: ProxyState, body: Any) -> Reply:
    req: EmbeddingRequest = parse_request(EmbeddingRequest, body)
    engine = state.embeddings
    if engine is None:
        raise EmbeddingsNotConfigured()
    if req.model is not None and req.model != engine.model_id:
        raise NotFound(f"model '{req.model}' does not exist; embeddings come from '{engine.model_id}'",
                       param="model", code="model_not_found")
    state.check_upstream(state.embedding_managed)
    return engine.embed(req)
