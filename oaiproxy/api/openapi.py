"""The OpenAPI 3.1 description of oaiproxy's own routes, served at ``GET /openapi.json``.

Generated from the same pydantic models (the ``protocol`` modules) that validate requests and
build responses, errors and model lists included, so it cannot drift from what the server really accepts and sends
(OpenAPI 3.1 schemas are JSON Schema 2020-12, which is what pydantic emits).
Fuzzers such as schemathesis read it; every status a route can answer is listed.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from oaiproxy import __version__
from oaiproxy.api.chat.protocol import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from oaiproxy.api.completions.protocol import CompletionRequest, TextCompletion
from oaiproxy.api.embeddings.protocol import EmbeddingList, EmbeddingRequest
from oaiproxy.api.protocol import ErrorResponse, Model, ModelList

REF = "#/components/schemas/{model}"


_ERRORS = {
    "400": "The request is invalid; `error.param` names the field.",
    "401": "Missing or wrong API key (only when the server runs with --api-key).",
    "404": "Unknown model.",
    "413": "The request body is larger than --max-body-bytes.",
    "500": "A bug in oaiproxy.",
    "502": "llama-server failed or answered something unusable.",
    "503": "llama-server is starting, restarting or has given up.",
    "504": "The request took longer than --request-timeout.",
}


def _error_responses(*codes: str) -> dict[str, Any]:
    return {code: {"description": _ERRORS[code],
                   "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}}}
            for code in codes}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": ref}}}


def _generation_route(summary: str, request_ref: str, response_ref: str, chunk_ref: str, op_id: str) -> dict[str, Any]:
    return {"post": {
        "operationId": op_id,
        "summary": summary,
        "requestBody": {"required": True, "content": _json(request_ref)},
        "responses": {
            "200": {"description": f"The result; with `stream: true` server-sent events, each `data:` line a "
                                   f"{chunk_ref.rsplit('/', 1)[-1]} object, ending with `data: [DONE]`.",
                    "content": {**_json(response_ref),
                                "text/event-stream": {"schema": {"type": "string"}}}},
            **_error_responses("400", "401", "404", "413", "500", "502", "503", "504"),
        },
    }}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The whole document; built once, it depends only on the code."""
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (ChatCompletionRequest, "validation"), (CompletionRequest, "validation"), (EmbeddingRequest, "validation"),
        (ChatCompletion, "serialization"), (ChatCompletionChunk, "serialization"),
        (TextCompletion, "serialization"), (EmbeddingList, "serialization"),
        (ModelList, "serialization"), (Model, "serialization"), (ErrorResponse, "serialization"),
    ]
    refs, top = models_json_schema(models, ref_template=REF)
    schemas = top.get("$defs", {})

    def ref(model: type[BaseModel], mode: str) -> str:
        return str(refs[(model, mode)]["$ref"])  # type: ignore[index]

    # the key is needed only when the server runs with --api-key
    security: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}]
    paths: dict[str, Any] = {
        "/health": {"get": {
            "operationId": "health", "summary": "Proxy and llama-server state (never needs a key).",
            "security": [{}],
            "responses": {
                "200": {"description": "Ready.", "content": {"application/json": {"schema": {"type": "object"}}}},
                "503": {"description": "llama-server is not healthy.",
                        "content": {"application/json": {"schema": {"type": "object"}}}},
            },
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document.", "security": [{}],
            "responses": {"200": {"description": "OpenAPI 3.1 document.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}},
        }},
        "/v1/models": {"get": {
            "operationId": "listModels", "summary": "The served models (chat, then embeddings if different).",
            "responses": {"200": {"description": "Model list.", "content": _json(ref(ModelList, "serialization"))},
                          **_error_responses("401")},
        }},
        "/v1/models/{model_id}": {"get": {
            "operationId": "retrieveModel", "summary": "One served model.",
            "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The model.", "content": _json(ref(Model, "serialization"))},
                          **_error_responses("401", "404")},
        }},
        "/v1/chat/completions": _generation_route(
            "Chat completion with tool calls that always name a requested tool and validate against its schema.",
            ref(ChatCompletionRequest, "validation"), ref(ChatCompletion, "serialization"),
            ref(ChatCompletionChunk, "serialization"), "createChatCompletion"),
        "/v1/completions": _generation_route(
            "Legacy text completion: the prompt goes to the model as it is.",
            ref(CompletionRequest, "validation"), ref(TextCompletion, "serialization"),
            ref(TextCompletion, "serialization"), "createCompletion"),
        "/v1/embeddings": {"post": {
            "operationId": "createEmbedding",
            "summary": "Embeddings from the embedding llama-server (400 `embeddings_not_configured` without one).",
            "requestBody": {"required": True, "content": _json(ref(EmbeddingRequest, "validation"))},
            "responses": {"200": {"description": "One embedding per input.",
                                  "content": _json(ref(EmbeddingList, "serialization"))},
                          **_error_responses("400", "401", "404", "413", "500", "502", "503", "504")},
        }},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "oaiproxy", "version": __version__,
                 "description": "OpenAI-compatible API with reliable tool calling in front of llama.cpp's "
                                "llama-server. Errors are OpenAI's error JSON."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "The --api-key value, when the server has one."}},
        },
        "security": security,
    }
