"""A stored Responses chain on the real proxy and the real default model, through the official openai SDK: two
responses linked by ``previous_response_id``, the second answering from the first's history; both read back
after the proxy restarts on the same SQLite file, then deleted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from tests._processes import LlamaServer, ProxyProcess
from tests.api.conftest import MODEL

pytestmark = pytest.mark.integration


def test_a_two_response_chain_survives_a_restart(upstream: LlamaServer, tmp_path: Path) -> None:
    db = tmp_path / "chain.db"
    args = ["--endpoint", upstream.url, "--db-url", f"sqlite+aiosqlite:///{db}"]
    proxy = ProxyProcess(args)
    try:
        client = OpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0, timeout=120)
        first = client.responses.create(model=MODEL, input="My name is Zorbulon. Say hello to me.",
                                        max_output_tokens=24, temperature=0)
        assert first.store is True and first.status in ("completed", "incomplete") and first.output_text
        second = client.responses.create(model=MODEL, input="What is my name? Answer with the name only.",
                                         previous_response_id=first.id, max_output_tokens=12, temperature=0)
        assert second.previous_response_id == first.id
        # the name was only ever said in the first response's input: the history reached the model
        assert "zorbulon" in second.output_text.lower(), second.output_text
        client.close()
    finally:
        proxy.stop()

    with sqlite3.connect(db) as conn:  # committed on disk, the chain linked
        rows = dict(conn.execute("SELECT id, previous_response_id FROM responses").fetchall())
    assert rows == {first.id: None, second.id: first.id}

    proxy = ProxyProcess(args)
    try:
        client = OpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0, timeout=120)
        again = client.responses.retrieve(second.id)
        assert again.output_text == second.output_text and again.previous_response_id == first.id
        items = list(client.responses.input_items.list(first.id))
        assert [item.content[0].text for item in items] == ["My name is Zorbulon. Say hello to me."]  # type: ignore[union-attr]
        client.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError) as info:
            client.responses.create(model=MODEL, input="And again?", previous_response_id=second.id,
                                    max_output_tokens=4)
        assert isinstance(info.value.body, dict) and info.value.body["param"] == "previous_response_id"
        client.close()
    finally:
        proxy.stop()
