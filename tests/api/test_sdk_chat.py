"""The official openai SDK, sync and async, against the real proxy on the real default model:
chat, streaming, models and errors raised as the SDK's typed exceptions."""

from __future__ import annotations

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.api.conftest import MODEL

MESSAGES = [{"role": "user", "content": "Write one sentence about the sea."}]


def test_chat_sync(client: OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=12, temperature=0, seed=4)
    assert reply.object == "chat.completion" and reply.model == MODEL
    msg = reply.choices[0].message
    assert msg.role == "assistant" and msg.content and msg.content.strip()
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_chat_stream_reassembles_to_the_non_streamed_answer(client: OpenAI) -> None:
    args = dict(model=MODEL, messages=MESSAGES, max_tokens=16, temperature=0, seed=4)
    whole = client.chat.completions.create(**args)
    chunks = list(client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    # include_usage: one last chunk with no choices and the totals
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


async def test_chat_async_and_async_stream(aclient: AsyncOpenAI) -> None:
    args = dict(model=MODEL, messages=MESSAGES, max_tokens=10, temperature=0, seed=2)
    whole = await aclient.chat.completions.create(**args)
    stream = await aclient.chat.completions.create(**args, stream=True)
    text = ""
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert whole.choices[0].message.content and text == whole.choices[0].message.content


def test_models_list_and_retrieve(client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == [MODEL]
    model = client.models.retrieve(MODEL)
    assert model.id == MODEL and model.object == "model" and model.owned_by == "oaiproxy"


async def test_models_async(aclient: AsyncOpenAI) -> None:
    page = await aclient.models.list()
    assert [m.id for m in page.data] == [MODEL]
    assert (await aclient.models.retrieve(MODEL)).id == MODEL


def test_bad_request_names_the_field(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature="hot")  # type: ignore[arg-type]
    assert err.value.status_code == 400 and err.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user"}])  # type: ignore[list-item]
    assert err.value.param.startswith("messages[0]")
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=0)
    assert err.value.param == "max_tokens"


def test_unknown_model_and_route_are_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("gpt-4o")
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=4)
    assert err.value.param == "model" and "gpt-4o" in err.value.message
    with pytest.raises(openai.NotFoundError):
        client.get("/no/such/route", cast_to=object)


async def test_async_errors_are_typed(aclient: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        await aclient.completions.create(model=MODEL, prompt="x", n=0)
    assert err.value.param == "n"
    with pytest.raises(openai.NotFoundError):
        await aclient.completions.create(model="davinci-002", prompt="x", max_tokens=2)
