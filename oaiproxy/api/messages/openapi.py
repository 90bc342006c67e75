"""The OpenAPI description of the Messages routes, from the same pydantic models the handlers use.

:mod:`oaiproxy.api.openapi` merges it into ``GET /openapi.json``. The schemas are named
``Anthropic…``: several share a name with an OpenAI one (``Message``, ``Usage``, ``ErrorResponse``),
and the prefix keeps both families' names as they are.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from oaiproxy.api.messages import protocol as p

REF = "#/components/schemas/Anthropic{model}"

_ERRORS = {
    "400": "The request is invalid; the message names the field.",
    "401": "Missing or wrong API key (only when the server runs with --api-key); `x-api-key` or Bearer.",
    "404": "Unknown model or route.",
    "413": "The request body is larger than --max-body-bytes.",
    "500": "A bug in oaiproxy.",
    "502": "llama-server failed or answered something unusable.",
    "503": "llama-server is starting, restarting or has given up (`overloaded_error`).",
    "504": "The request took longer than --request-timeout (`timeout_error`).",
}

#: what the stream's ``data:`` lines can be, each named by its ``type`` in the ``event:`` line
STREAM_EVENTS: tuple[type[BaseModel], ...] = (
    p.MessageStartEvent, p.PingEvent, p.ContentBlockStartEvent, p.ContentBlockDeltaEvent, p.ContentBlockStopEvent,
    p.MessageDeltaEvent, p.MessageStopEvent, p.ErrorResponse,
)


def messages_openapi() -> tuple[dict[str, Any], dict[str, Any]]:
    """``(paths, schemas)`` of ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``."""
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (p.MessagesRequest, "validation"), (p.CountTokensRequest, "validation"), (p.Message, "serialization"),
        (p.CountTokensResponse, "serialization"), *((event, "serialization") for event in STREAM_EVENTS),
    ]
    refs, top = models_json_schema(models, ref_template=REF)
    schemas = {f"Anthropic{name}": schema for name, schema in top.get("$defs", {}).items()}

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return {"$ref": str(refs[(model, mode)]["$ref"])}  # type: ignore[index]

    errors = {code: {"description": why,
                     "content": {"application/json": {"schema": ref(p.ErrorResponse, "serialization")}}}
              for code, why in _ERRORS.items()}
    version = {"name": "anthropic-version", "in": "header", "required": False, "schema": {"type": "string"},
               "description": "Accepted, whatever its value."}
    paths = {
        "/v1/messages": {"post": {
            "operationId": "createMessage",
            "summary": "Anthropic Messages: a tool_use block always names a requested tool and its input validates "
                       "against that tool's input_schema. Errors are Anthropic's error JSON.",
            "parameters": [version],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": ref(p.MessagesRequest, "validation")}}},
            "responses": {
                "200": {"description": "The message; with `stream: true` server-sent events named by their `type`: "
                                       "message_start, ping, content_block_start, content_block_delta, "
                                       "content_block_stop, message_delta, message_stop (error after a failure).",
                        "content": {"application/json": {"schema": ref(p.Message, "serialization")},
                                    "text/event-stream": {"schema": {"type": "string"}}}},
                **errors},
        }},
        "/v1/messages/count_tokens": {"post": {
            "operationId": "countMessageTokens",
            "summary": "The prompt's length in tokens as the model reads it (tools and chat template included).",
            "parameters": [version],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": ref(p.CountTokensRequest, "validation")}}},
            "responses": {"200": {"description": "The count.", "content": {
                "application/json": {"schema": ref(p.CountTokensResponse, "serialization")}}},
                **errors},
        }},
    }
    return paths, schemas


__all__ = ["REF", "STREAM_EVENTS", "messages_openapi"]
