"""Anthropic Messages wire types (pydantic v2): requests, responses, stream events and errors.

The shapes follow Anthropic's API reference, so the official ``anthropic`` SDK reads every answer
as it reads Anthropic's own. Requests ignore unknown fields (``cache_control`` on a block, beta
fields) but reject wrong types and out-of-range values with the field named; blocks and tools
this proxy cannot honour (images, documents, server tools) are recognised so that the 400 can
say why. ``GET /openapi.json`` describes the API from these same models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from oaiproxy.api.protocol import LenientModel, _loc_to_param, parse_request
from oaiproxy.errors import APIError, BadRequest

_TOOL_NAME = r"^[a-zA-Z0-9_\-]{1,128}$"


# ---------------------------------------------------------------- request: content blocks


class TextBlockParam(LenientModel):
    type: Literal["text"]
    text: str


class ImageBlockParam(LenientModel):
    """Recognised so the 400 can say why: oaiproxy serves text models."""

    type: Literal["image"]
    source: dict[str, Any] | None = None


class ToolUseBlockParam(LenientModel):
    """A call the assistant made earlier in the conversation."""

    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


class ToolResultBlockParam(LenientModel):
    """A tool's answer to the call ``tool_use_id``, sent in a user turn."""

    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[Annotated[TextBlockParam | ImageBlockParam, Field(discriminator="type")]] = ""
    is_error: bool = False


class ThinkingBlockParam(LenientModel):
    """An earlier answer's reasoning, sent back as the SDK received it."""

    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlockParam(LenientModel):
    type: Literal["redacted_thinking"]
    data: str | None = None


class OtherBlockParam(LenientModel):
    """Blocks of Anthropic's API that need a service oaiproxy does not have (files, search, server tools)."""

    type: Literal["document", "search_result", "server_tool_use", "web_search_tool_result", "container_upload",
                  "web_fetch_tool_result", "code_execution_tool_result", "mcp_tool_use", "mcp_tool_result"]


ContentBlockParam = Annotated[
    TextBlockParam | ImageBlockParam | ToolUseBlockParam | ToolResultBlockParam | ThinkingBlockParam
    | RedactedThinkingBlockParam | OtherBlockParam,
    Field(discriminator="type"),
]


class MessageParam(LenientModel):
    """A turn; ``system`` is a mid-conversation system message (text only), as Claude Code 2.1 sends after the
    first user turn."""

    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlockParam]

    @model_validator(mode="after")
    def _blocks_fit_the_role(self) -> MessageParam:
        if isinstance(self.content, str):
            return self
        for block in self.content:
            if self.role == "user" and isinstance(block, (ToolUseBlockParam, ThinkingBlockParam,
                                                           RedactedThinkingBlockParam)):
                raise ValueError(f"a user message cannot hold a '{block.type}' block (the assistant's)")
            if self.role == "assistant" and isinstance(block, (ToolResultBlockParam, ImageBlockParam)):
                raise ValueError(f"an assistant message cannot hold a '{block.type}' block")
            if self.role == "system" and not isinstance(block, TextBlockParam):
                raise ValueError(f"a system message holds text blocks only, not a '{block.type}' block")
        return self


# ---------------------------------------------------------------- request: tools and options


class ToolParam(LenientModel):
    """A client tool. Anthropic's server tools (``type`` like ``web_search_20250305``) are refused by name."""

    name: str = Field(pattern=_TOOL_NAME)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = Field(default=None, description='Only `"custom"` (or absent): no server tools.')
    #: Anthropic's strict tool use: no keys beyond ``properties`` in any object
    strict: bool | None = None

    @field_validator("input_schema")
    @classmethod
    def _an_object(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type") != "object":
            raise ValueError("a tool's input_schema must have \"type\": \"object\"")
        return value

    @model_validator(mode="after")
    def _a_client_tool(self) -> ToolParam:
        if self.type not in (None, "custom"):
            raise ValueError(f"tool type '{self.type}' is an Anthropic server tool, which oaiproxy does not "
                             "run; declare a client tool (name, description, input_schema)")
        if self.input_schema is None:
            raise ValueError("a tool needs 'input_schema'")
        return self


class ToolChoiceAuto(LenientModel):
    type: Literal["auto"]
    disable_parallel_tool_use: bool = False


class ToolChoiceAny(LenientModel):
    type: Literal["any"]
    disable_parallel_tool_use: bool = False


class ToolChoiceTool(LenientModel):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool = False


class ToolChoiceNone(LenientModel):
    type: Literal["none"]


ToolChoiceParam = Annotated[ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone,
                            Field(discriminator="type")]


class ThinkingEnabled(LenientModel):
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=1024)


class ThinkingDisabled(LenientModel):
    type: Literal["disabled"]


class ThinkingAdaptive(LenientModel):
    """The model decides whether and how long to think, within ``output_config.effort`` (Claude Code 2.1 sends
    it on every request)."""

    type: Literal["adaptive"]


ThinkingParam = Annotated[ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive, Field(discriminator="type")]


class JSONOutputFormat(LenientModel):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(LenientModel):
    """Anthropic's structured outputs: the answer's text is JSON that validates against ``format.schema``."""

    format: JSONOutputFormat | None = None
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = Field(
        default=None, description="With adaptive thinking: how much a thinking model may reason (default high).")


class Metadata(LenientModel):
    user_id: str | None = None


class CountTokensRequest(LenientModel):
    """``POST /v1/messages/count_tokens``: what the prompt is built from."""

    model: str
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[TextBlockParam] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoiceParam | None = None
    thinking: ThinkingParam | None = Field(
        default=None, description="Off unless enabled, as Anthropic's; a thinking model's reasoning comes back "
                                  "as `thinking` blocks (signature \"\").")

    # -- fields of Anthropic's API that need a service oaiproxy does not have: refused unless empty
    mcp_servers: list[Any] | None = Field(default=None, description="Refused unless empty: no MCP connector.")
    container: Any = Field(default=None, description="Refused unless null: no code-execution container.")

    def check_supported(self) -> None:
        """Refuse, by name, the fields this proxy cannot honour, rather than silently ignore them."""
        if self.mcp_servers:
            raise BadRequest("'mcp_servers' is not supported by oaiproxy: it has no MCP connector",
                             param="mcp_servers", code="unsupported_parameter")
        if self.container is not None:
            raise BadRequest("'container' is not supported by oaiproxy: it runs no code-execution container",
                             param="container", code="unsupported_parameter")


class MessagesRequest(CountTokensRequest):
    """``POST /v1/messages``."""

    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = None
    output_config: OutputConfig | None = Field(
        default=None, description="`format` (json_schema): the text answer is JSON enforced by the schema's grammar.")
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: Metadata | None = Field(default=None, description="Accepted and logged.")
    service_tier: Literal["auto", "standard_only"] | None = Field(default=None, description="Accepted: one tier.")
    stream: bool = False

    @model_validator(mode="after")
    def _budget_below_max_tokens(self) -> MessagesRequest:
        if isinstance(self.thinking, ThinkingEnabled) and self.thinking.budget_tokens >= self.max_tokens:
            raise ValueError("thinking.budget_tokens must be less than max_tokens (the reasoning is part of them)")
        return self

    @field_validator("stop_sequences")
    @classmethod
    def _no_empty_stop(cls, value: list[str] | None) -> list[str] | None:
        if value and any(not s for s in value):
            raise ValueError("a stop sequence cannot be empty")
        return value

    def bookkeeping(self) -> dict[str, Any]:
        """The accepted-and-logged fields that were sent, for the log line."""
        return {"metadata": self.metadata.model_dump(exclude_none=True)} if self.metadata is not None else {}


def _without_tags(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """``loc`` without the discriminator values pydantic puts in it (``content[0].text.text`` for a text
    block's ``text``): walking the body alongside, a part equal to the object's ``type`` is its tag
    (but a last part that is one of the object's keys is that field: an untagged text block's ``text``)."""
    kept: list[Any] = []
    node = data
    for n, part in enumerate(loc):
        # a tag is followed by the member's field, unless the error is the member's own (then no such key)
        if (isinstance(node, dict) and isinstance(part, str) and node.get("type") == part
                and (n < len(loc) - 1 or part not in node)):
            node = {k: v for k, v in node.items() if k != "type"}  # the tag, once: a field may share its name
            continue
        kept.append(part)
        if isinstance(node, dict) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif not (isinstance(part, str) and part.startswith(("list[", "tagged-union[", "union[", "function-"))):
            node = None
    return tuple(kept)


def parse_anthropic(model: type[BaseModel], data: Any) -> Any:
    """:func:`oaiproxy.api.protocol.parse_request` for this API's tagged blocks: the field named without
    the block's type (``messages[0].content[1].text``, ``thinking.budget_tokens``), the message as its.

    Of a string-or-blocks field's errors, the deepest is reported: a bad block is more to the point
    than "Input should be a valid string"."""
    if not isinstance(data, dict):
        return parse_request(model, data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = max((e for e in errors if e["loc"][:1] == errors[0]["loc"][:1]), key=lambda e: len(e["loc"]))
        param = _loc_to_param(_without_tags(tuple(first["loc"]), data))
        msg = "field required" if first["type"] == "missing" else first["msg"].removeprefix("Value error, ")
        raise BadRequest(f"invalid value for '{param}': {msg}", param=param, code="invalid_value") from None


# ---------------------------------------------------------------- response


StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str
    citations: None = None


class ToolUseBlock(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    #: the call's arguments as an object that validates against the tool's ``input_schema``
    input: dict[str, Any]


class ThinkingBlock(BaseModel):
    type: Literal["thinking"] = "thinking"
    thinking: str
    #: Anthropic signs its reasoning; oaiproxy has nothing to sign with, and sends ""
    signature: str = ""


ContentBlock = Annotated[TextBlock | ToolUseBlock | ThinkingBlock, Field(discriminator="type")]


class Usage(BaseModel):
    """Token counts as Anthropic splits them: ``input_tokens`` excludes the prompt tokens llama-server
    reused from its cache (``cache_read_input_tokens``); the sum is the whole prompt."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class Message(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[ContentBlock]
    model: str
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage


class CountTokensResponse(BaseModel):
    input_tokens: int


# ---------------------------------------------------------------- stream events


class MessageStartEvent(BaseModel):
    type: Literal["message_start"] = "message_start"
    message: Message


class PingEvent(BaseModel):
    type: Literal["ping"] = "ping"


class ContentBlockStartEvent(BaseModel):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: ContentBlock


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJSONDelta(BaseModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ThinkingDelta(BaseModel):
    type: Literal["thinking_delta"] = "thinking_delta"
    thinking: str


class SignatureDelta(BaseModel):
    type: Literal["signature_delta"] = "signature_delta"
    signature: str


BlockDelta = Annotated[TextDelta | InputJSONDelta | ThinkingDelta | SignatureDelta, Field(discriminator="type")]


class ContentBlockDeltaEvent(BaseModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: BlockDelta


class ContentBlockStopEvent(BaseModel):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDelta(BaseModel):
    stop_reason: StopReason
    stop_sequence: str | None = None


class MessageDeltaUsage(BaseModel):
    """Cumulative counts; the input side is known only once llama-server has read the prompt."""

    output_tokens: int
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageDeltaEvent(BaseModel):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDelta
    usage: MessageDeltaUsage


class MessageStopEvent(BaseModel):
    type: Literal["message_stop"] = "message_stop"


StreamEvent = (MessageStartEvent | PingEvent | ContentBlockStartEvent | ContentBlockDeltaEvent
               | ContentBlockStopEvent | MessageDeltaEvent | MessageStopEvent)


# ---------------------------------------------------------------- errors

#: HTTP status -> Anthropic's error type (its documented table; 502 is an upstream failure, so api_error)
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    405: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
    502: "api_error", 503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error",
}


class ErrorObject(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    """Every failure on a ``/v1/messages`` path, whatever its status: Anthropic's error JSON (also the
    ``data`` of a stream's ``error`` event)."""

    type: Literal["error"] = "error"
    error: ErrorObject

    @classmethod
    def of(cls, exc: APIError) -> ErrorResponse:
        """``exc`` in Anthropic's shape. Anthropic's errors have no ``param``: the message names the field."""
        message = exc.message
        if exc.param and exc.param not in message:
            message = f"{exc.param}: {message}"
        kind = ERROR_TYPES.get(exc.status) or ("invalid_request_error" if exc.status < 500 else "api_error")
        return cls(error=ErrorObject(type=kind, message=message))


__all__ = [
    "BlockDelta", "ContentBlock", "ContentBlockDeltaEvent", "ContentBlockParam", "ContentBlockStartEvent",
    "ContentBlockStopEvent", "CountTokensRequest", "CountTokensResponse", "ERROR_TYPES", "ErrorObject",
    "ErrorResponse", "ImageBlockParam", "InputJSONDelta", "JSONOutputFormat", "Message", "MessageDelta",
    "MessageDeltaEvent", "MessageDeltaUsage", "MessageParam", "MessageStartEvent", "MessageStopEvent",
    "MessagesRequest", "Metadata", "OtherBlockParam", "OutputConfig", "PingEvent", "RedactedThinkingBlockParam",
    "SignatureDelta", "StopReason", "StreamEvent", "TextBlock", "TextBlockParam", "TextDelta", "ThinkingBlock",
    "ThinkingBlockParam", "ThinkingDelta", "ThinkingDisabled", "ThinkingEnabled", "ThinkingParam", "ToolChoiceAny",
    "ToolChoiceAuto", "ToolChoiceNone", "ToolChoiceParam", "ToolChoiceTool", "ToolParam", "ToolResultBlockParam",
    "ToolUseBlock", "ToolUseBlockParam", "Usage", "parse_anthropic",
]
