"""OpenAI Responses request, response and stream-event shapes (pydantic v2): every wire type of the API.

The Responses API names things its own way (``input`` items instead of messages,
``function_call`` / ``function_call_output`` items instead of ``tool_calls`` and
``tool`` messages, flat function tools, ``text.format`` instead of
``response_format``, ``max_output_tokens``); :mod:`oaiproxy.api.responses.translate`
maps it onto the one conversation model. Requests ignore unknown fields, as
OpenAI-compatible servers are expected to, but reject wrong types and values with
the offending field named; errors are OpenAI's error JSON
(:class:`oaiproxy.api.protocol.ErrorResponse`), as OpenAI sends them for this API too.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, Discriminator, Field, Tag, field_validator

from oaiproxy.api.protocol import FieldRules, LenientModel, arguments_as_json_text, parse_request
from oaiproxy.errors import BadRequest

_TOOL_NAME = r"^[a-zA-Z0-9_.\-]{1,64}$"


# ---------------------------------------------------------------- request: input items


class InputText(LenientModel):
    type: Literal["input_text", "output_text", "text"]
    text: str


class Refusal(LenientModel):
    type: Literal["refusal"]
    refusal: str


class OtherInputPart(LenientModel):
    """Image, file and audio parts: recognised so the error can say they are unsupported."""

    type: Literal["input_image", "input_file", "input_audio"]


InputPart = Annotated[InputText | Refusal | OtherInputPart, Field(discriminator="type")]


class MessageItem(LenientModel):
    """A message: ``{"role", "content"}`` (``type: "message"`` optional, as the SDK's easy input)."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputPart]
    id: str | None = None

    def text(self) -> str:
        """The content as text; non-text parts are a 400 (this proxy serves text models)."""
        if isinstance(self.content, str):
            return self.content
        pieces = []
        for part in self.content:
            if isinstance(part, InputText):
                pieces.append(part.text)
            elif isinstance(part, Refusal):
                pieces.append(part.refusal)
            else:
                raise BadRequest(f"content parts of type '{part.type}' are not supported; send text",
                                 code="unsupported_content")
        return "".join(pieces)


class FunctionCallItem(LenientModel):
    """A call the model made earlier, sent back as history."""

    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str
    arguments: str
    id: str | None = None
    #: the namespace tool group the function belongs to, when it does
    namespace: str | None = None

    def tool_name(self) -> str:
        """The conversation's name for the called tool (a namespaced one is ``namespace.name``)."""
        return qualified_name(self.namespace, self.name) if self.namespace else self.name

    _arguments_as_json_text = field_validator("arguments", mode="before")(arguments_as_json_text)


class FunctionCallOutputItem(LenientModel):
    """The result of a call, for the model to read."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[InputPart]
    id: str | None = None

    def text(self) -> str:
        if isinstance(self.output, str):
            return self.output
        return MessageItem(role="user", content=self.output).text()


class ReasoningItem(LenientModel):
    """Reasoning from an earlier turn; its summary text is kept as the next assistant turn's reasoning."""

    type: Literal["reasoning"]
    summary: list[dict[str, Any]] = Field(default_factory=list)
    content: list[dict[str, Any]] | None = None
    id: str | None = None

    def text(self) -> str:
        parts = self.content or self.summary
        return "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))


class ItemReference(LenientModel):
    type: Literal["item_reference"]
    id: str


def _item_kind(value: Any) -> str:
    """An item's ``type``; a message may leave it out (the SDK's "easy input message")."""
    kind = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", "message")
    return f"<{kind}>" if isinstance(kind, str) else ""


InputItem = Annotated[
    Annotated[MessageItem, Tag("<message>")] | Annotated[FunctionCallItem, Tag("<function_call>")]
    | Annotated[FunctionCallOutputItem, Tag("<function_call_output>")] | Annotated[ReasoningItem, Tag("<reasoning>")]
    | Annotated[ItemReference, Tag("<item_reference>")],
    Discriminator(_item_kind, custom_error_type="invalid_item",
                  custom_error_message="an input item's type must be message, function_call, function_call_output, "
                                       "reasoning or item_reference")]


def _input_kind(value: Any) -> str | None:
    return "<text>" if isinstance(value, str) else "<items>" if isinstance(value, list) else None


#: ``input``: a string (one user message) or a list of items; a list's errors name the item, not the string form
Input = Annotated[Annotated[str, Tag("<text>")] | Annotated[list[InputItem], Tag("<items>")],
                  Discriminator(_input_kind, custom_error_type="invalid_input",
                                custom_error_message="must be a string or a list of input items")]


# ---------------------------------------------------------------- request: tools and formats


class FunctionTool(LenientModel):
    type: Literal["function"]
    name: str = Field(pattern=_TOOL_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamespaceTool(LenientModel):
    """Function tools grouped under one name (Codex CLI sends its sub-agent tools so); a call to one comes back
    with the group's name as its ``namespace``."""

    type: Literal["namespace"]
    name: str = Field(pattern=_TOOL_NAME)
    description: str | None = None
    tools: list[dict[str, Any]] = Field(min_length=1)


def qualified_name(namespace: str, name: str) -> str:
    """The one tool name the conversation (and the model) knows a namespaced function by."""
    return f"{namespace}.{name}"


class HostedTool(LenientModel):
    """A tool OpenAI runs itself (web search, file search, computer use, ...): refused by name."""

    type: str


class FunctionToolChoice(LenientModel):
    type: Literal["function"]
    name: str


class AllowedTools(LenientModel):
    """``{"type": "allowed_tools", "mode": "auto"|"required", "tools": [{"type": "function", "name"}]}``."""

    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[FunctionToolChoice] = Field(min_length=1)


class TextFormat(LenientModel):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | bool | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(LenientModel):
    format: TextFormat | None = None
    verbosity: str | None = None


class ReasoningConfig(LenientModel):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None


class ResponsesRequest(FieldRules, LenientModel):
    model: str | None = None
    input: Input
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionToolChoice | AllowedTools | None = None
    parallel_tool_calls: bool = True
    text: TextConfig | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool = False
    reasoning: ReasoningConfig | None = None

    # -- bookkeeping: accepted, changing nothing in the answer, and logged
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    metadata: dict[str, str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    service_tier: str | None = None
    include: list[str] | None = None

    # -- state: kept in the proxy's store (oaiproxy.store)
    store: bool | None = Field(default=None, description=(
        "Keep the response (default: true, as OpenAI's) for `previous_response_id` and `GET /v1/responses/{id}`."))
    previous_response_id: str | None = Field(default=None, description=(
        "Continue a stored response: its chain's input and output items come before `input`."))
    conversation: str | dict[str, Any] | None = Field(default=None, description=(
        "A conversation's id (or `{\"id\": ...}`): its items come before `input`, and this request's input and "
        "output items are added to it. Not with `previous_response_id`."))
    background: bool | None = Field(default=None, description="Only `false` (or omitted).")

    BOOKKEEPING: ClassVar[tuple[str, ...]] = ("user", "safety_identifier", "prompt_cache_key", "metadata",
                                              "truncation", "service_tier", "include")
    UNSUPPORTED: ClassVar[dict[str, tuple[tuple[Any, ...], str]]] = {
        "background": ((False,), "responses run while the request is open; background responses (and their "
                                 "polling) are not served"),
    }

    def check_supported(self) -> None:
        """Refuse, by name, what this proxy cannot honour, rather than drop it silently."""
        self.refuse_unsupported()
        if self.conversation is not None and self.previous_response_id is not None:
            raise BadRequest("Mutually exclusive parameters: send either 'previous_response_id' or 'conversation', "
                             "not both", param="conversation", code="invalid_value")
        self.conversation_id()
        if isinstance(self.input, list):
            for i, item in enumerate(self.input):
                if isinstance(item, ItemReference):
                    raise BadRequest("item references are not resolved yet; send the item itself, or continue "
                                     "with previous_response_id", param=f"input[{i}]", code="unsupported_parameter")
        self.check_metadata()

    def conversation_id(self) -> str | None:
        """The conversation's id, sent as a string or as ``{"id": ...}``; a 400 naming the field otherwise."""
        if self.conversation is None or isinstance(self.conversation, str):
            return self.conversation or None
        cid = self.conversation.get("id")
        if not isinstance(cid, str) or not cid:
            raise BadRequest("'conversation' must be a conversation id, or an object with its 'id'",
                             param="conversation.id", code="invalid_value")
        return cid

    def function_tools(self) -> list[FunctionTool]:
        """The function tools, a namespace's under their qualified names (:func:`qualified_name`); any other
        tool type is a 400 naming it (the proxy cannot run it)."""
        return [tool for tool, _, _ in self._function_tools()]

    def namespaced(self) -> dict[str, tuple[str, str]]:
        """Each namespaced function's qualified name → (namespace, name), to answer its calls as sent."""
        return {tool.name: spelled for tool, spelled, _ in self._function_tools() if spelled is not None}

    def tool_fields(self) -> dict[str, str]:
        """Each function tool's name → where the request declares it (``tools[2]``, ``tools[4].tools[1]``)."""
        return {tool.name: where for tool, _, where in self._function_tools()}

    def _function_tools(self) -> list[tuple[FunctionTool, tuple[str, str] | None, str]]:
        tools: list[tuple[FunctionTool, tuple[str, str] | None, str]] = []
        for i, raw in enumerate(self.tools or []):
            kind = raw.get("type") if isinstance(raw, dict) else None
            if kind == "namespace":
                group = _parse_tool(NamespaceTool, raw, f"tools[{i}]")
                for j, inner in enumerate(group.tools):
                    where = f"tools[{i}].tools[{j}]"
                    tool = _function_tool(inner, where)
                    spelled = (group.name, tool.name)
                    tools.append((tool.model_copy(update={"name": qualified_name(*spelled)}), spelled, where))
            else:
                tools.append((_function_tool(raw, f"tools[{i}]"), None, f"tools[{i}]"))
        return tools


def _function_tool(raw: Any, where: str) -> FunctionTool:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind != "function":
        raise BadRequest(f"{where} is a '{kind}' tool, which oaiproxy cannot run: only 'function' tools "
                         "(alone or in a 'namespace') are supported (the client runs them)", param=f"{where}.type",
                         code="unsupported_tool")
    return _parse_tool(FunctionTool, raw, where)


_Tool = TypeVar("_Tool", FunctionTool, NamespaceTool)


def _parse_tool(model: type[_Tool], raw: Any, where: str) -> _Tool:
    try:
        parsed: _Tool = parse_request(model, raw)
    except BadRequest as bad:
        param = f"{where}.{bad.param}"
        raise BadRequest(bad.message.replace(f"'{bad.param}'", f"'{param}'", 1), param=param,
                         code=bad.code) from None
    return parsed


# ---------------------------------------------------------------- response


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class OutputFunctionCall(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"]
    #: the namespace tool group of the called function (left out for a plain function tool)
    namespace: str | None = Field(default=None, exclude_if=lambda value: value is None)


class ReasoningText(BaseModel):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class OutputReasoning(BaseModel):
    type: Literal["reasoning"] = "reasoning"
    id: str
    summary: list[Any] = Field(default_factory=list)
    content: list[ReasoningText] = Field(default_factory=list)
    status: Literal["in_progress", "completed", "incomplete"] | None = None


OutputItem = Annotated[OutputMessage | OutputFunctionCall | OutputReasoning, Field(discriminator="type")]


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(BaseModel):
    code: str
    message: str


class ConversationRef(BaseModel):
    id: str


class Response(BaseModel):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    parallel_tool_calls: bool
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    tool_choice: Any
    tools: list[Any]
    text: dict[str, Any]
    store: bool = False
    previous_response_id: str | None = None
    #: the conversation it was part of (left out when none, as before Conversations)
    conversation: ConversationRef | None = Field(default=None, exclude_if=lambda value: value is None)
    truncation: str = "disabled"
    metadata: dict[str, str] = Field(default_factory=dict)
    usage: ResponseUsage | None = None


class DeletedResponse(BaseModel):
    """What ``DELETE /v1/responses/{id}`` answers."""

    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


class InputItemList(BaseModel):
    """``GET /v1/responses/{id}/input_items``: one page of a stored response's input items (the API's JSON)."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


# ---------------------------------------------------------------- stream events


class StreamEvent(BaseModel):
    """One server-sent event; ``type`` is also the SSE ``event:`` name, ``sequence_number`` counts from 0."""

    type: str
    sequence_number: int


class ResponseLifecycleEvent(StreamEvent):
    """``response.created`` / ``.in_progress`` / ``.completed`` / ``.incomplete`` / ``.failed``."""

    response: Response


class OutputItemEvent(StreamEvent):
    """``response.output_item.added`` / ``.done``."""

    output_index: int
    item: OutputItem


class ContentPartEvent(StreamEvent):
    """``response.content_part.added`` / ``.done``."""

    item_id: str
    output_index: int
    content_index: int
    part: OutputText | ReasoningText


class TextDeltaEvent(StreamEvent):
    """``response.output_text.delta`` and ``response.reasoning_text.delta``."""

    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] = Field(default_factory=list)


class TextDoneEvent(StreamEvent):
    """``response.output_text.done`` and ``response.reasoning_text.done``."""

    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] = Field(default_factory=list)


class ArgumentsDeltaEvent(StreamEvent):
    """``response.function_call_arguments.delta``."""

    item_id: str
    output_index: int
    delta: str


class ArgumentsDoneEvent(StreamEvent):
    """``response.function_call_arguments.done``."""

    item_id: str
    output_index: int
    name: str
    arguments: str


class ErrorEvent(StreamEvent):
    """``error``: the stream failed after it started."""

    code: str | None
    message: str
    param: str | None


__all__ = [
    "AllowedTools", "ArgumentsDeltaEvent", "ArgumentsDoneEvent", "ContentPartEvent", "ConversationRef",
    "DeletedResponse", "ErrorEvent", "FunctionCallItem", "FunctionCallOutputItem", "FunctionTool",
    "FunctionToolChoice", "HostedTool",
    "IncompleteDetails", "InputItem", "InputItemList", "InputText", "InputTokensDetails", "ItemReference",
    "MessageItem", "OtherInputPart", "OutputFunctionCall", "OutputItem", "OutputItemEvent", "OutputMessage",
    "OutputReasoning", "OutputText", "OutputTokensDetails", "ReasoningConfig", "ReasoningItem", "ReasoningText",
    "Refusal", "Response", "ResponseError", "ResponseLifecycleEvent", "ResponseUsage", "ResponsesRequest",
    "StreamEvent", "TextConfig", "TextDeltaEvent", "TextDoneEvent", "TextFormat",
]
