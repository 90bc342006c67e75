"""OpenAI Responses on the neutral :class:`oaiproxy.engine.Engine`: request → conversation and sampling,
result → :class:`Response`, stream events → the Responses event sequence.

Nothing about prompts, grammars or parsing is decided here; only the Responses shape
is: output items (``reasoning``, ``message`` with ``output_text``, ``function_call``),
``status`` and ``incomplete_details``, usage in input/output tokens, and the stream's
``response.created`` … ``response.completed`` events, each numbered by ``sequence_number``.

State: with a store (``oaiproxy.store``), ``previous_response_id``'s chain, or the ``conversation``'s items,
are read before the model runs (its items are the history), and a response kept (``store``, true unless
false) is committed *before* the client is told it is complete: the JSON answer, or the stream's
``response.completed`` event, goes out only after the commit. With a ``conversation``, that commit also
appends the request's input items and the response's output items to it, in the same transaction. A
response the store could not keep is a 503 (an ``error`` event in a stream), never an answer that later
turns out unknown.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from oaiproxy.api.conversations.protocol import check_items, duplicate, not_found
from oaiproxy.api.responses.protocol import (
    ArgumentsDeltaEvent,
    ArgumentsDoneEvent,
    ContentPartEvent,
    ConversationRef,
    ErrorEvent,
    IncompleteDetails,
    InputItem,
    InputTokensDetails,
    OutputFunctionCall,
    OutputItem,
    OutputItemEvent,
    OutputMessage,
    OutputReasoning,
    OutputText,
    OutputTokensDetails,
    ReasoningText,
    Response,
    ResponseLifecycleEvent,
    ResponsesRequest,
    ResponseUsage,
    StreamEvent,
    TextDeltaEvent,
    TextDoneEvent,
)
from oaiproxy.api.responses.translate import input_items, to_conversation
from oaiproxy.conversation.model import Conversation, ToolCall
from oaiproxy.dialects.base import ContentDelta, ToolCallDelta
from oaiproxy.engine import CallDone, Engine, Finished, ReasoningStep, Sampling, Started, Step, TokenUsage
from oaiproxy.errors import APIError, BadRequest, InternalError, NotFound
from oaiproxy.store.conversations import ConversationStore, DuplicateItems
from oaiproxy.store.responses import ResponseRecord, ResponseStore


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def to_sampling(req: ResponsesRequest) -> Sampling:
    """The request's sampling options in the engine's terms."""
    return Sampling(max_tokens=req.max_output_tokens, temperature=req.temperature, top_p=req.top_p)


def _usage(usage: TokenUsage) -> ResponseUsage:
    return ResponseUsage(input_tokens=usage.prompt_tokens,
                         input_tokens_details=InputTokensDetails(cached_tokens=usage.cached_tokens),
                         output_tokens=usage.completion_tokens,
                         output_tokens_details=OutputTokensDetails(reasoning_tokens=usage.reasoning_tokens),
                         total_tokens=usage.prompt_tokens + usage.completion_tokens)


#: a namespaced function's qualified name → (namespace, name), from :meth:`ResponsesRequest.namespaced`
Namespaced = dict[str, tuple[str, str]]


def _call_item(call: ToolCall, namespaced: Namespaced, status: str = "completed") -> OutputFunctionCall:
    item = OutputFunctionCall(id=_new_id("fc"), call_id=call.id, name=call.name, arguments=call.arguments,
                              status=status)  # type: ignore[arg-type]
    return _spelled(item, namespaced)


def _spelled(item: OutputFunctionCall, namespaced: Namespaced) -> OutputFunctionCall:
    """A call to a namespaced function as the client declared it: its own name and the ``namespace``."""
    if item.name in namespaced:
        item.namespace, item.name = namespaced[item.name]
    return item


#: the id prefix OpenAI gives each kind of item
_ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}
_ITEMS: TypeAdapter[list[InputItem]] = TypeAdapter(list[InputItem])


def stored_item(item: InputItem) -> dict[str, Any]:
    """An input item as ``input_items`` (and a Conversation) lists it: with an id (the client's, or a new one)
    and a status, a message's content as parts."""
    data = item.model_dump(mode="json", by_alias=True, exclude_none=True)
    kind = data["type"]
    data = {"id": data.pop("id", None) or _new_id(_ITEM_PREFIX.get(kind, "item")), **data}
    if kind == "message" and isinstance(data["content"], str):
        part = "output_text" if data["role"] == "assistant" else "input_text"
        data["content"] = [{"type": part, "text": data["content"]}]
    if kind != "reasoning":
        data.setdefault("status", "completed")
    return data


def stored_input(req: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's own input items as ``input_items`` lists them (:func:`stored_item`)."""
    return [stored_item(item) for item in input_items(req)]


class ResponsesEngine:
    """Serves the Responses API for one model through its :class:`Engine` (shared with the other surfaces);
    ``store``: where responses are kept (None: nowhere, ``store: true`` and ``previous_response_id`` are 400s);
    ``conversations``: where the ``conversation`` a request names lives (the same database)."""

    def __init__(self, core: Engine, store: ResponseStore | None = None,
                 conversations: ConversationStore | None = None):
        self.core = core
        self.store = store
        self.conversations = conversations

    def check_state(self, req: ResponsesRequest) -> None:
        """Without a store, asking for one is refused by name (omitting ``store`` just keeps nothing)."""
        if self.store is not None:
            return
        for name in ("store", "previous_response_id", "conversation"):
            if getattr(req, name) not in (None, False):
                raise BadRequest(f"'{name}' needs the response store, which this server runs without; send "
                                 "store: false (or omit it) and the whole conversation as input items",
                                 param=name, code="unsupported_parameter")

    def keeps(self, req: ResponsesRequest) -> bool:
        """Whether this response is stored: OpenAI's default is yes."""
        return self.store is not None and req.store is not False

    def _persists(self, req: ResponsesRequest) -> bool:
        """Whether anything is written once the response is done: the response, or the conversation's new items
        (added whatever ``store`` says: a conversation holds every turn made on it)."""
        return self.keeps(req) or (self.conversations is not None and req.conversation_id() is not None)

    async def history(self, req: ResponsesRequest) -> list[InputItem]:
        """The items of ``previous_response_id``'s chain, oldest first: each response's input, then its output;
        or the ``conversation``'s items, oldest first."""
        cid = req.conversation_id()
        if cid is not None:
            return await self._conversation_history(req, cid)
        if req.previous_response_id is None:
            return []
        self.check_state(req)
        assert self.store is not None
        chain = await self.store.chain(req.previous_response_id)
        if chain.missing is not None:
            which = ("" if chain.missing == req.previous_response_id
                     else f" (it continues '{chain.missing}', which is gone)")
            raise NotFound(f"previous response '{req.previous_response_id}' not found{which}; "
                           "it was never stored (store: false), or was deleted",
                           param="previous_response_id", code="previous_response_not_found")
        raw = [item for record in chain.records for item in (*record.input_items, *record.output_items)]
        try:
            return _ITEMS.validate_python(raw)
        except ValidationError as exc:
            raise InternalError(f"the stored chain of '{req.previous_response_id}' does not read back: {exc}",
                                param="previous_response_id", code="stored_response_invalid") from None

    async def _conversation_history(self, req: ResponsesRequest, cid: str) -> list[InputItem]:
        self.check_state(req)
        assert self.conversations is not None
        stored = await self.conversations.items(cid)
        if stored is None:
            raise not_found(cid, "conversation")
        held = {item.id for item in stored}
        check_items(input_items(req), "input")  # what the conversation could not keep is refused before the model runs
        for i, item in enumerate(input_items(req)):
            if item.id is not None and item.id in held:
                raise BadRequest(f"Duplicate item found with id {item.id}: conversation '{cid}' holds it already, "
                                 "or the input repeats it; remove it and try again", param=f"input[{i}].id",
                                 code="duplicate_item")
            if item.id is not None:
                held.add(item.id)
        try:
            return _ITEMS.validate_python([item.item for item in stored])
        except ValidationError as exc:
            raise InternalError(f"the stored items of conversation '{cid}' do not read back: {exc}",
                                param="conversation", code="stored_conversation_invalid") from None

    async def _keep(self, req: ResponsesRequest, response: Response) -> None:
        """Commit the response (when kept) and, with a ``conversation``, its items, in one transaction."""
        dumped = response.model_dump(mode="json")
        output, usage = dumped.pop("output"), dumped.pop("usage")
        inputs, cid = stored_input(req), req.conversation_id()
        record = ResponseRecord(
            id=response.id, model=response.model, status=response.status, input_items=inputs,
            output_items=output, usage=usage, response=dumped, previous_response_id=req.previous_response_id,
            user=req.user or req.safety_identifier, conversation_id=cid,
            created_at=datetime.fromtimestamp(response.created_at, UTC))
        if cid is None:
            assert self.store is not None
            await self.store.save(record)
            return
        assert self.conversations is not None
        items = [*inputs, *output]
        try:
            added = await self.conversations.append(cid, items, record if self.keeps(req) else None)
        except DuplicateItems as exc:
            raise duplicate(exc, items, "input") from None
        if added is None:
            raise not_found(cid, "conversation")

    def translate(self, req: ResponsesRequest, history: list[InputItem] | None = None) -> tuple[Conversation,
                                                                                                Sampling]:
        param = "conversation" if req.conversation_id() is not None else "previous_response_id"
        return (to_conversation(req, history=history or [], tool_extra_keys=self.core.tool_extra_keys,
                                history_param=param), to_sampling(req))

    def _shell(self, req: ResponsesRequest, rid: str, created: int, status: str) -> Response:
        """The response object without output: what ``response.created`` carries, and the frame of the answer."""
        text: dict[str, Any] = {"format": {"type": "text"}}
        if req.text is not None and req.text.format is not None:
            text = {"format": req.text.format.model_dump(by_alias=True, exclude_none=True)}
        choice: Any = req.tool_choice if req.tool_choice is not None else "auto"
        cid = req.conversation_id()
        if not isinstance(choice, str):
            choice = choice.model_dump()
        return Response(id=rid, created_at=created, status=status, instructions=req.instructions,  # type: ignore[arg-type]
                        model=self.core.model_id, parallel_tool_calls=req.parallel_tool_calls,
                        temperature=req.temperature, top_p=req.top_p, max_output_tokens=req.max_output_tokens,
                        tool_choice=choice, tools=list(req.tools or []), text=text,
                        metadata=dict(req.metadata or {}), store=self.keeps(req),
                        previous_response_id=req.previous_response_id,
                        conversation=ConversationRef(id=cid) if cid is not None else None)

    # ------------------------------------------------------------ whole answers

    async def complete(self, req: ResponsesRequest) -> Response:
        conv, sampling = await asyncio.to_thread(self.translate, req, await self.history(req))
        result = (await self.core.complete(conv, sampling))[0]
        output: list[OutputItem] = []
        if result.reasoning:
            output.append(OutputReasoning(id=_new_id("rs"), content=[ReasoningText(text=result.reasoning)]))
        incomplete = result.finish_reason == "length"
        status = "incomplete" if incomplete else "completed"
        if result.parsed.content:
            output.append(OutputMessage(id=_new_id("msg"), status=status,  # type: ignore[arg-type]
                                        content=[OutputText(text=result.parsed.content)]))
        namespaced = req.namespaced()
        output.extend(_call_item(call, namespaced) for call in result.parsed.tool_calls)
        response = self._shell(req, _new_id("resp"), int(time.time()), status)
        response.output = output
        response.incomplete_details = IncompleteDetails(reason="max_output_tokens") if incomplete else None
        response.usage = _usage(result.usage)
        if self._persists(req):
            await self._keep(req, response)
        return response

    # ------------------------------------------------------------ streaming

    async def stream(self, req: ResponsesRequest) -> AsyncGenerator[StreamEvent, None]:
        """The Responses event sequence; a failure after the start is an ``error`` event, then the end."""
        conv, sampling = await asyncio.to_thread(self.translate, req, await self.history(req))
        writer = _StreamWriter(self._shell(req, _new_id("resp"), int(time.time()), "in_progress"), req.namespaced())
        events = self.core.stream(conv, sampling)
        try:
            async for event in events:
                outs = writer.on(event)
                if isinstance(event, Finished) and self._persists(req):
                    await self._keep(req, writer.response)  # committed before the client hears it is done
                for out in outs:
                    yield out
        except APIError as exc:
            if not writer.started:
                raise  # nothing sent yet: a plain HTTP error
            yield ErrorEvent(type="error", sequence_number=writer.next_number(), code=exc.code,
                             message=exc.message, param=exc.param)
        finally:
            await events.aclose()


class _StreamWriter:
    """Turns the engine's neutral events into Responses events, keeping the output items open in order."""

    def __init__(self, shell: Response, namespaced: Namespaced) -> None:
        self.response = shell
        self.namespaced = namespaced
        self.started = False
        self._number = 0
        #: the open message item (its index in output, its text so far)
        self._message: tuple[int, OutputMessage] | None = None
        self._reasoning: tuple[int, OutputReasoning] | None = None
        #: engine call index -> (output index, item) of calls streamed incrementally
        self._calls: dict[int, tuple[int, OutputFunctionCall]] = {}

    def next_number(self) -> int:
        self._number += 1
        return self._number - 1

    def _event(self, cls: Callable[..., StreamEvent], kind: str, **fields: Any) -> StreamEvent:
        return cls(type=kind, sequence_number=self.next_number(), **fields)

    def _lifecycle(self, kind: str) -> StreamEvent:
        return self._event(ResponseLifecycleEvent, kind, response=self.response.model_copy(deep=True))

    def on(self, event: Any) -> list[StreamEvent]:
        if isinstance(event, Started):
            self.started = True
            return [self._lifecycle("response.created"), self._lifecycle("response.in_progress")]
        if isinstance(event, Step):
            out: list[StreamEvent] = []
            for ev in event.events:
                if isinstance(ev, ContentDelta):
                    out.extend(self._text(ev.text))
                elif isinstance(ev, ToolCallDelta):
                    out.extend(self._call_delta(ev))
            return out
        if isinstance(event, CallDone):
            return self._whole_call(event.call)
        if isinstance(event, Finished):
            return self._finish(event)
        if isinstance(event, ReasoningStep):
            return self._reasoning_text(event.text)
        return []

    # -- items

    def _add_item(self, item: OutputItem) -> tuple[int, StreamEvent]:
        self.response.output.append(item)
        index = len(self.response.output) - 1
        return index, self._event(OutputItemEvent, "response.output_item.added", output_index=index,
                                  item=item.model_copy(deep=True))

    def _reasoning_text(self, text: str) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self._reasoning is None:
            item = OutputReasoning(id=_new_id("rs"), status="in_progress", content=[ReasoningText(text="")])
            index, added = self._add_item(item)
            self._reasoning = (index, item)
            out.append(added)
        index, item = self._reasoning
        item.content[0].text += text
        out.append(self._event(TextDeltaEvent, "response.reasoning_text.delta", item_id=item.id, output_index=index,
                               content_index=0, delta=text))
        return out

    def _close_reasoning(self) -> list[StreamEvent]:
        if self._reasoning is None:
            return []
        index, item = self._reasoning
        self._reasoning = None
        item.status = "completed"
        return [self._event(TextDoneEvent, "response.reasoning_text.done", item_id=item.id, output_index=index,
                            content_index=0, text=item.content[0].text),
                self._event(OutputItemEvent, "response.output_item.done", output_index=index,
                            item=item.model_copy(deep=True))]

    def _text(self, text: str) -> list[StreamEvent]:
        out = self._close_reasoning()
        if self._message is None:
            message = OutputMessage(id=_new_id("msg"), status="in_progress", content=[OutputText(text="")])
            index, added = self._add_item(message)
            added_item = added.item  # type: ignore[attr-defined]
            added_item.content = []  # the item as added: no content part yet
            self._message = (index, message)
            out += [added, self._event(ContentPartEvent, "response.content_part.added", item_id=message.id,
                                       output_index=index, content_index=0, part=OutputText(text=""))]
        index, message = self._message
        message.content[0].text += text
        out.append(self._event(TextDeltaEvent, "response.output_text.delta", item_id=message.id, output_index=index,
                               content_index=0, delta=text))
        return out

    def _close_message(self, status: str = "completed") -> list[StreamEvent]:
        if self._message is None:
            return []
        index, message = self._message
        self._message = None
        message.status = status  # type: ignore[assignment]
        part = message.content[0]
        return [self._event(TextDoneEvent, "response.output_text.done", item_id=message.id, output_index=index,
                            content_index=0, text=part.text),
                self._event(ContentPartEvent, "response.content_part.done", item_id=message.id, output_index=index,
                            content_index=0, part=part.model_copy()),
                self._event(OutputItemEvent, "response.output_item.done", output_index=index,
                            item=message.model_copy(deep=True))]

    def _call_delta(self, ev: ToolCallDelta) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if ev.index not in self._calls:
            out += self._close_reasoning() + self._close_message()
            item = _spelled(OutputFunctionCall(id=_new_id("fc"), call_id=ev.id or _new_id("call"),
                                               name=ev.name or "", arguments="", status="in_progress"),
                            self.namespaced)
            index, added = self._add_item(item)
            self._calls[ev.index] = (index, item)
            out.append(added)
        index, item = self._calls[ev.index]
        if ev.arguments:
            item.arguments += ev.arguments
            out.append(self._event(ArgumentsDeltaEvent, "response.function_call_arguments.delta", item_id=item.id,
                                   output_index=index, delta=ev.arguments))
        return out

    def _done_call(self, index: int, item: OutputFunctionCall, status: str) -> list[StreamEvent]:
        item.status = status  # type: ignore[assignment]
        return [self._event(ArgumentsDoneEvent, "response.function_call_arguments.done", item_id=item.id,
                            output_index=index, name=item.name, arguments=item.arguments),
                self._event(OutputItemEvent, "response.output_item.done", output_index=index,
                            item=item.model_copy(deep=True))]

    def _whole_call(self, call: ToolCall) -> list[StreamEvent]:
        out = self._close_reasoning() + self._close_message()
        item = _call_item(call, self.namespaced, "in_progress")
        item.arguments = ""
        index, added = self._add_item(item)
        out.append(added)
        item.arguments = call.arguments
        out.append(self._event(ArgumentsDeltaEvent, "response.function_call_arguments.delta", item_id=item.id,
                               output_index=index, delta=call.arguments))
        return out + self._done_call(index, item, "completed")

    def _finish(self, event: Finished) -> list[StreamEvent]:
        incomplete = event.finish_reason == "length"
        status = "incomplete" if incomplete else "completed"
        out = self._close_reasoning() + self._close_message(status)
        for index, item in self._calls.values():
            out += self._done_call(index, item, "incomplete" if incomplete else "completed")
        self._calls.clear()
        self.response.status = status  # type: ignore[assignment]
        self.response.incomplete_details = IncompleteDetails(reason="max_output_tokens") if incomplete else None
        self.response.usage = _usage(event.usage)
        out.append(self._lifecycle("response.incomplete" if incomplete else "response.completed"))
        return out


__all__ = ["ResponsesEngine", "stored_input", "stored_item", "to_sampling"]
