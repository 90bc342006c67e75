"""Two real proxy processes on one PostgreSQL database, in front of the session's llama-server and default model:
a Responses chain begun on one is continued, read and deleted on the other (``previous_response_id``), as two
replicas of the proxy behind one load balancer share their state."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests._processes import LlamaServer, ProxyProcess
from tests.api.conftest import MODEL
from tests.store.postgres import PostgresServer

pytestmark = pytest.mark.integration


def test_a_chain_begun_on_one_proxy_is_continued_on_another(upstream: LlamaServer,
                                                            postgres_server: PostgresServer) -> None:
    args = ["--endpoint", upstream.url, "--db-url", postgres_server.create_database()]
    one = ProxyProcess(args)
    two = ProxyProcess(args)
    try:
        a = OpenAI(base_url=one.base_url, api_key="unused", max_retries=0, timeout=120)
        b = OpenAI(base_url=two.base_url, api_key="unused", max_retries=0, timeout=120)
        first = a.responses.create(model=MODEL, input="My name is Zorbulon. Say hello to me.",
                                   max_output_tokens=24, temperature=0)
        assert first.store is True and first.output_text
        second = b.responses.create(model=MODEL, input="What is my name? Answer with the name only.",
                                    previous_response_id=first.id, max_output_tokens=12, temperature=0)
        assert second.previous_response_id == first.id
        # the name was only ever said in the first response's input, kept by the other proxy
        assert "zorbulon" in second.output_text.lower(), second.output_text
        assert a.responses.retrieve(second.id).output_text == second.output_text
        b.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            a.responses.retrieve(first.id)
        a.close()
        b.close()
    finally:
        one.stop()
        two.stop()
