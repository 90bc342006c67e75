"""The OpenAPI 3.1 description of oaiproxy's own routes, served at ``GET /openapi.json``.

Generated from the same pydantic models (the ``protocol`` modules) that validate requests and
build responses, errors and model lists included, so it cannot drift from what the server really accepts and sends
(OpenAPI 3.1 schemas are JSON Schema 2020-12, which is what pydantic emits).
Fuzzers such as schemathesis read it; every status a route can answer is listed. The ``/v1/messages``
paths answer Anthropic's error JSON (component ``Anthropic.ErrorResponse``), every other path OpenAI's.
PikoBrain's ``POST /`` and threads (``/{thread}``) are left out: their bodies are plain text or JSON by
content type, which a fuzzer would mostly send to the model as a thread name.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from oaiproxy import __version__
from oaiproxy.api.chat.protocol import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from oaiproxy.api.completions.protocol import CompletionRequest, TextCompletion
from oaiproxy.api.conversations import protocol as conversations
from oaiproxy.api.embeddings.protocol import EmbeddingList, EmbeddingRequest
from oaiproxy.api.messages import protocol as anthropic
from oaiproxy.api.paging import PAGE_DEFAULT, PAGE_MAX
from oaiproxy.api.protocol import ErrorResponse, Model, ModelList
from oaiproxy.api.responses.protocol import DeletedResponse, InputItemList, Response, ResponsesRequest

REF = "#/components/schemas/{model}"


_ERRORS = {
    "400": "The request is invalid; `error.param` names the field.",
    "401": "Missing or wrong API key (only when the server runs with --api-key).",
    "404": "Unknown model; on /v1/responses/{response_id}, a response that was not stored or was deleted; on "
           "/v1/conversations/..., a conversation (or item) that was never created or was deleted; on /{thread}, "
           "a thread that was never written or was deleted.",
    "409": "Another run on the same thread committed first (`thread_busy`): nothing of this request was kept; "
           "send it again.",
    "413": "The request body is larger than --max-body-bytes.",
    "500": "A bug in oaiproxy.",
    "502": "llama-server failed or answered something unusable.",
    "503": "llama-server is starting, restarting or has given up; or the response store's database is unavailable.",
    "504": "The request took longer than --request-timeout.",
}


#: the prefix of Anthropic's components (every /v1/messages path answers its error JSON, not OpenAI's)
ANTHROPIC = "Anthropic."
ANTHROPIC_REF = "#/components/schemas/" + ANTHROPIC + "{model}"
ANTHROPIC_ERROR = ANTHROPIC + "ErrorResponse"
_GENERATION_ERRORS = ("400", "401", "404", "413", "500", "502", "503", "504")


def _error_responses(*codes: str, model: str = "ErrorResponse") -> dict[str, Any]:
    return {code: {"description": _ERRORS[code],
                   "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}}}
            for code in codes}


def _path_id(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": ref}}}


def _generation_route(summary: str, request_ref: str, response_ref: str, stream: str, op_id: str,
                      errors: str = "ErrorResponse") -> dict[str, Any]:
    return {"post": {
        "operationId": op_id,
        "summary": summary,
        "requestBody": {"required": True, "content": _json(request_ref)},
        "responses": {
            "200": {"description": f"The result; with `stream: true` server-sent events: {stream}.",
                    "content": {**_json(response_ref),
                                "text/event-stream": {"schema": {"type": "string"}}}},
            **_error_responses(*_GENERATION_ERRORS, model=errors),
        },
    }}


def _page_query(default: int, most: int) -> list[dict[str, Any]]:
    return [{"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": most, "default": default}},
            {"name": "order", "in": "query", "required": False,
             "schema": {"type": "string", "enum": ["asc", "desc"], "default": "desc"}},
            {"name": "after", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "An item id: the page starts after it."}]


def _plain_paths() -> dict[str, Any]:
    """PikoBrain's plain interface at the root: ``POST /`` and the threads (docs/server-tools.md, docs/store.md).

    Their bodies are not JSON requests but the messages themselves, in any of four content types; the
    answer is the model's text with the run's ``X-Run-*`` headers.
    """
    body = {"required": False, "content": {
        "text/plain": {"schema": {"type": "string"}},
        "application/json": {"schema": {"description": "Taken as the text of one message."}},
        "application/x-www-form-urlencoded": {"schema": {"type": "object", "additionalProperties": {"type": "string"}}},
        "multipart/form-data": {"schema": {"type": "object", "additionalProperties": {"type": "string"}}},
    }}
    run_query = [
        {"name": "brain", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "The brain to run (default: the first one of --tools; none: the model alone)."},
        {"name": "user", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "Who sends it, kept for audit (as the X-User header)."},
        {"name": "role", "in": "query", "required": False, "schema": {"type": "string", "enum": ["user", "assistant"]},
         "description": "The role of the body's messages (as the X-Role header)."},
    ]
    run_headers = {name: {"description": text, "schema": {"type": "string"}} for name, text in (
        ("X-Run-Duration", "Seconds the run took."), ("X-Run-Context", "Messages the model read."),
        ("X-Run-Input-Tokens", "Prompt tokens, every round counted."),
        ("X-Run-Output-Tokens", "Generated tokens, every round counted."),
        ("X-Run-Total-Tokens", "Both."))}
    answer = {"description": "The answer as the body, in the answer's content type, and the run's figures.",
              "headers": run_headers, "content": {"text/plain": {"schema": {"type": "string"}}}}
    listing = {"application/json": {"schema": {"type": "object", "description": (
        "`{\"object\": \"list\", \"thread\", \"data\", \"first_id\", \"last_id\", \"has_more\"}`, each "
        "message `{\"id\" (its position), \"object\": \"thread.message\", \"position\", \"role\", \"content\", "
        "\"content_type\", \"user\", \"created_at\"}`, with `tool_calls`, `tool_call_id`, `reasoning` and "
        "`usage` when it has them.")}}}
    thread = {"name": "thread", "in": "path", "required": True,
              "description": "The thread's name (not one of the proxy's own route names).",
              "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}}
    json_object = {"application/json": {"schema": {"type": "object"}}}
    thread_errors = ("400", "401", "404", "409", "413", "500", "502", "503", "504")
    return {
        "/": {"post": {
            "operationId": "runPlain", "summary": "Run the body's messages (a brain, or the model) and answer as text.",
            "parameters": run_query, "requestBody": {**body, "required": True},
            "responses": {"200": answer, **_error_responses(*_GENERATION_ERRORS)},
        }},
        "/{thread}": {
            "parameters": [thread],
            "post": {"operationId": "runThread",
                     "summary": "Add the body's messages to the thread and run on all of it (an empty body: just run); "
                                "everything is kept once the run succeeded.",
                     "parameters": run_query, "requestBody": body,
                     "responses": {"200": answer, **_error_responses(*thread_errors)}},
            "put": {"operationId": "addToThread", "summary": "Add the body's messages to the thread; run nothing.",
                    "parameters": run_query[1:], "requestBody": {**body, "required": True},
                    "responses": {"200": {"description": "`{\"object\": \"thread.messages.added\", \"thread\", "
                                                         "\"added\", \"first_position\", \"last_position\"}`.",
                                          "content": json_object},
                                  **_error_responses("400", "401", "413", "503")}},
            "get": {"operationId": "readThread", "summary": "One page of the thread's messages.",
                    "parameters": [
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_DEFAULT}},
                        {"name": "order", "in": "query", "required": False,
                         "schema": {"type": "string", "enum": ["asc", "desc"], "default": "asc"}},
                        {"name": "after", "in": "query", "required": False, "schema": {"type": "integer"},
                         "description": "A message position: the page starts after it."},
                        {"name": "before", "in": "query", "required": False, "schema": {"type": "integer"},
                         "description": "A message position: the page ends before it."}],
                    "responses": {"200": {"description": "The page.", "content": listing},
                                  **_error_responses("400", "401", "404", "503")}},
            "delete": {"operationId": "deleteThread", "summary": "Forget the thread and its messages.",
                       "responses": {"200": {"description": "`{\"id\", \"object\": \"thread.deleted\", "
                                                            "\"deleted\": true}`.", "content": json_object},
                                     **_error_responses("400", "401", "404", "503")}},
        },
    }


def _conversation_paths(ref: Callable[[type[BaseModel], str], str]) -> dict[str, Any]:
    """The Conversations routes (a 400 ``store_disabled`` on a proxy without a store)."""
    conversation = _json(ref(conversations.Conversation, "serialization"))
    item_list = _json(ref(conversations.ConversationItemList, "serialization"))
    conversation_id = _path_id("conversation_id", "A conversation's id (`conv_...`).")
    item = {"application/json": {"schema": {"type": "object", "description": (
        "The item, as the Responses API's input and output items (message, function_call, "
        "function_call_output, reasoning), with its `id`.")}}}

    def body(model: type[BaseModel]) -> dict[str, Any]:
        return {"required": True, "content": _json(ref(model, "validation"))}

    return {
        "/v1/conversations": {"post": {
            "operationId": "createConversation", "summary": "A new conversation, with up to 20 initial items.",
            "requestBody": body(conversations.ConversationCreateRequest),
            "responses": {"200": {"description": "The conversation.", "content": conversation},
                          **_error_responses("400", "401", "413", "503")}}},
        "/v1/conversations/{conversation_id}": {
            "parameters": [conversation_id],
            "get": {"operationId": "retrieveConversation", "summary": "A conversation.",
                    "responses": {"200": {"description": "The conversation.", "content": conversation},
                                  **_error_responses("400", "401", "404", "503")}},
            "post": {"operationId": "updateConversation", "summary": "Replace a conversation's metadata.",
                     "requestBody": body(conversations.ConversationUpdateRequest),
                     "responses": {"200": {"description": "The conversation.", "content": conversation},
                                   **_error_responses("400", "401", "404", "413", "503")}},
            "delete": {"operationId": "deleteConversation", "summary": "Delete a conversation and its items.",
                       "responses": {"200": {"description": "Deleted.", "content": _json(
                           ref(conversations.ConversationDeleted, "serialization"))},
                                     **_error_responses("400", "401", "404", "503")}},
        },
        "/v1/conversations/{conversation_id}/items": {
            "parameters": [conversation_id],
            "post": {"operationId": "createConversationItems", "summary": "Add up to 20 items at the end.",
                     "requestBody": body(conversations.ItemsCreateRequest),
                     "responses": {"200": {"description": "The items added.", "content": item_list},
                                   **_error_responses("400", "401", "404", "413", "503")}},
            "get": {"operationId": "listConversationItems", "summary": "One page of a conversation's items.",
                    "parameters": _page_query(PAGE_DEFAULT, PAGE_MAX),
                    "responses": {"200": {"description": "The page.", "content": item_list},
                                  **_error_responses("400", "401", "404", "503")}},
        },
        "/v1/conversations/{conversation_id}/items/{item_id}": {
            "parameters": [conversation_id, _path_id("item_id", "An item's id.")],
            "get": {"operationId": "retrieveConversationItem", "summary": "One item of a conversation.",
                    "responses": {"200": {"description": "The item.", "content": item},
                                  **_error_responses("400", "401", "404", "503")}},
            "delete": {"operationId": "deleteConversationItem", "summary": "Delete one item; answers the conversation.",
                       "responses": {"200": {"description": "The conversation.", "content": conversation},
                                     **_error_responses("400", "401", "404", "503")}},
        },
    }


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The whole document; built once, it depends only on the code."""
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (ChatCompletionRequest, "validation"), (CompletionRequest, "validation"), (EmbeddingRequest, "validation"),
        (ChatCompletion, "serialization"), (ChatCompletionChunk, "serialization"),
        (TextCompletion, "serialization"), (EmbeddingList, "serialization"),
        (ModelList, "serialization"), (Model, "serialization"), (ErrorResponse, "serialization"),
        (ResponsesRequest, "validation"), (Response, "serialization"), (DeletedResponse, "serialization"),
        (InputItemList, "serialization"),
        (conversations.ConversationCreateRequest, "validation"),
        (conversations.ConversationUpdateRequest, "validation"),
        (conversations.ItemsCreateRequest, "validation"), (conversations.Conversation, "serialization"),
        (conversations.ConversationDeleted, "serialization"), (conversations.ConversationItemList, "serialization"),
    ]
    refs, top = models_json_schema(models, ref_template=REF)
    schemas = top.get("$defs", {})
    # Anthropic's models apart, under "Anthropic.": their names (Message, Usage, ErrorResponse) are OpenAI's too
    anthropic_models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (anthropic.MessagesRequest, "validation"), (anthropic.CountTokensRequest, "validation"),
        (anthropic.Message, "serialization"), (anthropic.CountTokensResponse, "serialization"),
        (anthropic.ErrorResponse, "serialization"),
    ]
    anthropic_refs, anthropic_top = models_json_schema(anthropic_models, ref_template=ANTHROPIC_REF)
    refs.update(anthropic_refs)
    schemas.update({f"{ANTHROPIC}{name}": schema for name, schema in anthropic_top.get("$defs", {}).items()})

    def ref(model: type[BaseModel], mode: str) -> str:
        return str(refs[(model, mode)]["$ref"])  # type: ignore[index]

    # the key is needed only when the server runs with --api-key
    security: list[dict[str, list[str]]] = [{}, {"bearerAuth": []}, {"apiKeyHeader": []}]
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
            "each `data:` line a ChatCompletionChunk object, ending with `data: [DONE]`", "createChatCompletion"),
        "/v1/completions": _generation_route(
            "Legacy text completion: the prompt goes to the model as it is.",
            ref(CompletionRequest, "validation"), ref(TextCompletion, "serialization"),
            "each `data:` line a TextCompletion object, ending with `data: [DONE]`", "createCompletion"),
        "/v1/messages": _generation_route(
            "Anthropic Messages: `tool_use` blocks always name a requested tool and their `input` validates.",
            ref(anthropic.MessagesRequest, "validation"), ref(anthropic.Message, "serialization"),
            "Anthropic's sequence (`message_start`, `content_block_start` / `_delta` / `_stop`, `message_delta`, "
            "`message_stop`; `error` on a failure after the start)", "createMessage", errors=ANTHROPIC_ERROR),
        "/v1/messages/count_tokens": {"post": {
            "operationId": "countMessageTokens",
            "summary": "The prompt tokens the same Messages request would take (nothing is generated).",
            "requestBody": {"required": True, "content": _json(ref(anthropic.CountTokensRequest, "validation"))},
            "responses": {"200": {"description": "The count.",
                                  "content": _json(ref(anthropic.CountTokensResponse, "serialization"))},
                          **_error_responses("400", "401", "404", "413", "500", "502", "503", "504",
                                             model=ANTHROPIC_ERROR)},
        }},
        "/v1/responses": _generation_route(
            "OpenAI Responses: `function_call` items always name a requested tool and their arguments validate; "
            "`store: true` keeps the response for `previous_response_id` and the routes below.",
            ref(ResponsesRequest, "validation"), ref(Response, "serialization"),
            "each event's `type` is also its SSE `event:` name (`response.created` ... `response.completed`)",
            "createResponse"),
        "/v1/responses/{response_id}": {
            "parameters": [_path_id("response_id", "The id of a response created with `store: true`.")],
            "get": {"operationId": "retrieveResponse", "summary": "A stored response, as it was answered.",
                    "responses": {"200": {"description": "The response.",
                                          "content": _json(ref(Response, "serialization"))},
                                  **_error_responses("401", "404", "503")}},
            "delete": {"operationId": "deleteResponse", "summary": "Delete a stored response.",
                       "responses": {"200": {"description": "Deleted.",
                                             "content": _json(ref(DeletedResponse, "serialization"))},
                                     **_error_responses("401", "404", "503")}},
        },
        "/v1/responses/{response_id}/input_items": {"get": {
            "operationId": "listInputItems", "summary": "One page of a stored response's own input items.",
            "parameters": [_path_id("response_id", "The id of a response created with `store: true`."),
                           *_page_query(PAGE_DEFAULT, PAGE_MAX)],
            "responses": {"200": {"description": "The page.", "content": _json(ref(InputItemList, "serialization"))},
                          **_error_responses("400", "401", "404", "503")},
        }},
        **_conversation_paths(ref),
        **_plain_paths(),
        "/v1/tools": {"get": {
            "operationId": "listServerTools",
            "summary": "The server tools loaded from --tools (OpenAPI and MCP sources), what failed, and the brains.",
            "responses": {"200": {"description": "The catalog.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}},
                          **_error_responses("401")},
        }},
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
                                               "description": "The --api-key value, when the server has one."},
                                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key",
                                                 "description": "The same key as Anthropic's SDKs send it."}},
        },
        "security": security,
    }
