"""``POST /v1/chat/completions``: the body checked and translated (legacy ``functions`` included),
then handed to :class:`oaiproxy.api.chat.serving.ChatEngine`, with the agent loop's plan when the model is
a brain or the request names ``server_tools``; :mod:`oaiproxy.api.app` sends the reply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from oaiproxy.api.chat import legacy_functions
from oaiproxy.api.chat.protocol import ChatCompletionRequest
from oaiproxy.api.protocol import parse_request
from oaiproxy.server_tools.plan import plan_loop

if TYPE_CHECKING:
    from oaiproxy.api.app import ProxyState, Reply


async def chat_completions(request: web.Request, state: ProxyState, body: Any) -> Reply:
    req: ChatCompletionRequest = parse_request(ChatCompletionRequest, body)
    loop = plan_loop(state.tools_snapshot, req.model, req.server_tools)
    if loop is None or loop.brain is None:
        state.check_model(req.model)
    req.check_supported()
    state.log_bookkeeping(request, req.bookkeeping())
    legacy = req.functions is not None
    req = legacy_functions.to_tools_request(req)
    # a brain runs on the default model
    engine = (await state.serving(None if loop is not None and loop.brain is not None else req.model)).engine
    if not req.stream:
        work = engine.complete(req, loop)
        return legacy_functions.complete(work) if legacy else work
    chunks = engine.stream(req, loop)
    return legacy_functions.stream(chunks) if legacy else chunks
