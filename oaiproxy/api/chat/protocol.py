"""OpenAI chat-completions request and response shapes (pydantic v2): every wire type of the API.

The parts all OpenAI surfaces share (usage, stream options, sampling checks, errors) are
:mod:`oaiproxy.api.protocol`'s. Requests ignore unknown fields, as OpenAI-compatible servers are expected to,
but reject wrong types and out-of-range values with the offending field named.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from oaiproxy.api.protocol import FieldRules, LenientModel, SamplingChecks, StreamOptions, Usage, arguments_as_json_text
from oaiproxy.errors import BadRequest

_TOOL_NAME = r"^[a-zA-Z0-9_.\-]{1,64}$"


# ---------------------------------------------------------------- request


class TextPart(LenientModel):
    type: Literal["text"]
    text: str


class OtherPart(LenientModel):
    """Image, audio, file parts: recognised so the error can say they are unsupported."""

    type: Literal["image_url", "input_audio", "file", "refusal"]


ContentPart = Annotated[TextPart | OtherPart, Field(discriminator="type")]


class FunctionCall(LenientModel):
    name: str
    arguments: str = "{}"

    _arguments_as_json_text = field_validator("arguments", mode="before")(arguments_as_json_text)


class MessageToolCall(LenientModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(LenientModel):
    #: "function" is the pre-tools role of a function's result (it carries ``name``, no ``tool_call_id``);
    #: :mod:`oaiproxy.api.chat.legacy_functions` turns it into a "tool" message before the engine sees it
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None
    #: the pre-tools shape of an assistant's call (one per message, no id)
    function_call: FunctionCall | None = None
    #: a past assistant turn's reasoning, as this proxy returned it; rendered the way the template reads it
    reasoning_content: str | None = None
    #: the same, under the name some clients (OpenRouter's shape) send it
    reasoning: str | None = None

    def reasoning_text(self) -> str | None:
        """The turn's reasoning, whichever of the two names carries it."""
        return self.reasoning_content if self.reasoning_content is not None else self.reasoning

    @model_validator(mode="after")
    def _check_role_fields(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a message with role 'tool' needs 'tool_call_id'")
        if self.role == "function" and not self.name:
            raise ValueError("a message with role 'function' needs 'name' (the function it answers)")
        if self.role != "assistant" and self.content is None:
            raise ValueError(f"a message with role '{self.role}' needs 'content'")
        if self.role == "assistant" and self.content is None and not self.tool_calls and not self.function_call:
            raise ValueError("an assistant message needs 'content', 'tool_calls' or 'function_call'")
        if self.function_call is not None and self.role != "assistant":
            raise ValueError("only an assistant message can carry 'function_call'")
        if self.function_call is not None and self.tool_calls:
            raise ValueError("a message carries 'tool_calls' or the legacy 'function_call', not both")
        return self

    def text(self) -> str | None:
        """Content flattened to text; non-text parts are a 400 (this proxy serves text models)."""
        if self.content is None or isinstance(self.content, str):
            return self.content
        pieces = []
        for part in self.content:
            if isinstance(part, TextPart):
                pieces.append(part.text)
            else:
                raise BadRequest(f"content parts of type '{part.type}' are not supported; send text",
                                 param="messages.content", code="unsupported_content")
        return "".join(pieces)


class FunctionDefinition(LenientModel):
    name: str = Field(pattern=_TOOL_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(LenientModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(LenientModel):
    name: str


class NamedToolChoiceModel(LenientModel):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(LenientModel):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | bool | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatModel(LenientModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_needed(self) -> ResponseFormatModel:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type 'json_schema' needs a 'json_schema' object")
        return self


class ChatCompletionRequest(SamplingChecks, FieldRules, LenientModel):
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoiceModel | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormatModel | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    n: int = Field(default=1, ge=1, le=8)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20,
                                     description="Needs `logprobs: true` (400 otherwise, as OpenAI).")
    stream: bool = False
    stream_options: StreamOptions | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = Field(
        default=None, description="How much a thinking model may reason before it answers: a reasoning budget "
                                  "(minimal 256 tokens, low 1024, medium 4096, high: the server's "
                                  "`--reasoning-budget`; `none`: no reasoning), also passed to the chat "
                                  "template as `reasoning_effort`. See docs/reasoning.md.")
    chat_template_kwargs: dict[str, Any] | None = Field(
        default=None, description="Extra variables for the model's chat template (e.g. `enable_thinking: false`), "
                                  "as llama-server and vLLM accept them.")
    server_tools: list[str] | None = Field(
        default=None, description="oaiproxy extension: server-side tools (source namespaces or tool names of the "
                                  "`--tools` file, as `GET /v1/tools` lists them) the proxy runs itself in a loop "
                                  "before it answers; the steps come back in `steps`. A brain's model id does the "
                                  "same with the brain's tools. See docs/server-tools.md.")

    # -- the pre-tools fields: translated to tools/tool_choice, answered in their own shape
    functions: list[FunctionDefinition] | None = Field(
        default=None, min_length=1,
        description="Deprecated by OpenAI in favour of `tools`; translated to `tools` (at most one call, "
                    "answered as `message.function_call`). Not together with `tools`.")
    function_call: Literal["none", "auto"] | NamedFunction | None = Field(
        default=None, description="Deprecated by OpenAI in favour of `tool_choice`; needs `functions`.")

    # -- accepted and logged (debug level); they change nothing in the answer
    user: str | None = Field(default=None, description="Accepted and logged.")
    safety_identifier: str | None = Field(default=None, description="Accepted and logged.")
    prompt_cache_key: str | None = Field(
        default=None, description="Accepted and logged: llama-server reuses a slot's cached prompt prefix "
                                  "on its own.")
    metadata: dict[str, str] | None = Field(default=None, description="Accepted and logged.")
    store: bool | None = Field(default=None, description="Accepted and logged; nothing is stored (chat is "
                                                         "stateless here).")

    # -- OpenAI fields oaiproxy cannot honour: refused with a 400 naming them unless null (or the value
    #    that asks for what happens anyway); see :meth:`check_supported`
    audio: dict[str, Any] | None = Field(default=None, description="Refused unless null: no audio output.")
    modalities: list[str] | None = Field(default=None, description='Only `["text"]` (or null).')
    prediction: dict[str, Any] | None = Field(default=None, description="Refused unless null: no predicted "
                                                                        "outputs.")
    service_tier: str | None = Field(default=None, description="Only `auto` or `default` (or null).")
    verbosity: str | None = Field(default=None, description="Refused unless null.")
    web_search_options: dict[str, Any] | None = Field(default=None, description="Refused unless null: no web "
                                                                                "search.")
    moderation: dict[str, Any] | None = Field(default=None, description="Refused unless null: no moderation.")
    prompt_cache_retention: str | None = Field(default=None, description="Only `in_memory` (or null).")
    prompt_cache_options: dict[str, Any] | None = Field(default=None, description="Refused unless null.")

    BOOKKEEPING: ClassVar[tuple[str, ...]] = ("user", "safety_identifier", "prompt_cache_key", "metadata", "store")
    UNSUPPORTED: ClassVar[dict[str, tuple[tuple[Any, ...], str]]] = {
        "audio": ((), "audio output is not supported: oaiproxy serves text models"),
        "modalities": ((["text"],), "only the 'text' modality is supported"),
        "prediction": ((), "predicted outputs are not supported by llama-server's /completion"),
        "service_tier": (("auto", "default"), "there is one service tier; use 'auto' or 'default'"),
        "verbosity": ((), "verbosity cannot be controlled"),
        "web_search_options": ((), "web search is not supported"),
        "moderation": ((), "moderation is not supported"),
        "prompt_cache_retention": (("in_memory",), "prompts are cached in llama-server's memory only; "
                                                   "use 'in_memory'"),
        "prompt_cache_options": ((), "prompt-cache options are not supported: llama-server caches each "
                                     "slot's prompt prefix on its own"),
    }

    def check_supported(self) -> None:
        """Refuse, by name, the OpenAI fields this proxy cannot honour, rather than silently ignore them.

        Fields outside OpenAI's API are still ignored (the README promises that);
        fields inside it either work, are harmless bookkeeping (``user``,
        ``metadata``, ``store``...), or get this 400.
        """
        self.refuse_unsupported()
        if self.top_logprobs is not None and not self.logprobs:
            raise BadRequest("'top_logprobs' needs 'logprobs': true", param="top_logprobs", code="invalid_value")
        self.check_metadata()

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


# ---------------------------------------------------------------- response


class _OmitWhenNone(BaseModel):
    """Drops the fields named in ``omit_when_none`` from the JSON when they are None.

    For the legacy ``function_call`` fields: OpenAI sends them only to clients
    that asked with ``functions``, and a ``"function_call": null`` in every
    other answer would be noise that no OpenAI client expects.
    """

    omit_when_none: ClassVar[tuple[str, ...]] = ()

    # no return annotation on purpose: with one, pydantic would describe the model as that type in
    # /openapi.json instead of by its fields
    @model_serializer(mode="wrap")
    def _omit_none(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        for name in self.omit_when_none:
            if isinstance(data, dict) and data.get(name) is None:
                data.pop(name, None)
        return data


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class ResponseFunction(BaseModel):
    name: str
    arguments: str


class ResponseToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ResponseFunction


class ResponseMessage(_OmitWhenNone):
    omit_when_none = ("function_call", "reasoning_content")

    role: Literal["assistant"] = "assistant"
    content: str | None
    #: a thinking model's reasoning, never part of ``content`` (absent when it did not reason)
    reasoning_content: str | None = None
    refusal: None = None
    tool_calls: list[ResponseToolCall] | None = None
    #: only in answers to a request with the legacy ``functions`` (then ``tool_calls`` is null)
    function_call: ResponseFunction | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: None = None


class Choice(BaseModel):
    index: int
    message: ResponseMessage
    logprobs: ChoiceLogprobs | None = None
    #: "function_call" only in answers to a request with the legacy ``functions``
    finish_reason: FinishReason


class StepResult(BaseModel):
    """What one server call gave back."""

    tool_call_id: str
    name: str
    content: str
    content_type: str
    is_error: bool
    duration_ms: int


def _absent_when_none(value: Any) -> bool:
    return value is None


class ToolStep(BaseModel):
    """oaiproxy extension: one step of the proxy's agent loop. ``tool_calls``: round ``round`` called these
    server tools, which run next; ``tool_results``: what they gave back, fed to the model's next round."""

    type: Literal["tool_calls", "tool_results"]
    round: int
    tool_calls: list[ResponseToolCall] | None = Field(default=None, exclude_if=_absent_when_none)
    results: list[StepResult] | None = Field(default=None, exclude_if=_absent_when_none)


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[Choice]
    usage: Usage
    #: oaiproxy extension: the server-tool steps that led to the answer (only when server tools ran)
    steps: list[ToolStep] | None = Field(default=None, exclude_if=_absent_when_none)


class DeltaFunction(BaseModel):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunction


class Delta(_OmitWhenNone):
    omit_when_none = ("function_call", "reasoning_content")

    role: Literal["assistant"] | None = None
    content: str | None = None
    #: a piece of a thinking model's reasoning, streamed before the answer
    reasoning_content: str | None = None
    refusal: None = None
    tool_calls: list[DeltaToolCall] | None = None
    #: only in streams answering a request with the legacy ``functions``
    function_call: DeltaFunction | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    usage: Usage | None = None
    #: oaiproxy extension: a server-tool step as it happens (in a chunk of its own, with no choices)
    step: ToolStep | None = Field(default=None, exclude_if=_absent_when_none)


__all__ = [
    "ChatCompletion", "ChatCompletionChunk", "ChatCompletionRequest", "Choice", "ChoiceLogprobs", "ChunkChoice",
    "ContentPart", "Delta", "DeltaFunction", "DeltaToolCall", "FinishReason", "FunctionCall",
    "FunctionDefinition", "JSONSchemaFormat", "Message", "MessageToolCall", "NamedFunction",
    "NamedToolChoiceModel", "OtherPart", "ResponseFormatModel", "ResponseFunction", "ResponseMessage",
    "ResponseToolCall", "StepResult", "TextPart", "TokenLogprob", "Tool", "ToolStep", "TopLogprob",
]
