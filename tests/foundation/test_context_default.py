"""The default context: every slot gets the model's trained context (GGUF ``<arch>.context_length``),
bounded by memory, and the proxy says so at start-up and in ``/health``.

The old default, 4096 tokens shared by 2 slots, gave 2048 tokens per request to a model trained for
32768: an ordinary agent prompt got a 400.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from oaiproxy.runtime.gguf_meta import ModelMetadata, read_metadata
from oaiproxy.runtime.llama_server import FALLBACK_CONTEXT, plan_context
from tests._processes import ProxyProcess

GIB = 1 << 30


def test_kv_bytes_per_token_from_the_gguf(default_model_path: Path, llama_models_dir: Path) -> None:
    gemma = read_metadata(default_model_path)
    # Gemma 3 270M: 18 layers × 1 KV head × (256 + 256) × 2 bytes (f16)
    assert (gemma.context_length, gemma.block_count, gemma.head_count_kv) == (32768, 18, 1)
    assert gemma.kv_bytes_per_token() == 18 * 1 * 512 * 2
    # Llama 3 8B's shape (the vocab-only GGUF keeps the header): 32 layers × 8 KV heads × 2 × 128 × 2 = 128 KiB
    llama3 = read_metadata(llama_models_dir / "ggml-vocab-llama-bpe.gguf")
    assert llama3.kv_bytes_per_token() == 32 * 8 * 2 * 128 * 2


def test_kv_bytes_per_token_defaults_and_per_layer_heads() -> None:
    # no key/value length: embedding_length / head_count; no head_count_kv: head_count
    meta = ModelMetadata(path=Path("m"), block_count=2, embedding_length=64, head_count=4)
    assert meta.kv_bytes_per_token() == 2 * 4 * (16 + 16) * 2
    per_layer = ModelMetadata(path=Path("m"), block_count=3, embedding_length=64, head_count=4,
                              head_count_kv=[1, 2, 0], key_length=8, value_length=8)
    assert per_layer.kv_bytes_per_token() == (1 + 2 + 0) * 16 * 2
    assert ModelMetadata(path=Path("m")).kv_bytes_per_token() is None
    assert ModelMetadata(path=Path("m"), block_count=2, head_count=[1, 2]).kv_bytes_per_token() is None


def test_plan_gives_each_slot_the_trained_context(default_model_path: Path) -> None:
    meta = read_metadata(default_model_path)
    plan = plan_context(meta, 2, available=16 * GIB)
    assert (plan.per_slot, plan.slots, plan.ctx_size, plan.capped_by_memory) == (32768, 2, 65536, False)
    assert plan.describe().startswith("context: 32768 tokens per slot × 2 slots (the model's trained context")


def test_plan_is_capped_by_memory(default_model_path: Path) -> None:
    meta = read_metadata(default_model_path)
    plan = plan_context(meta, 2, available=GIB)  # half of 1 GiB / (18432 B × 2 slots) = 14563 → 14336
    assert (plan.per_slot, plan.ctx_size, plan.capped_by_memory) == (14336, 28672, True)
    assert plan.per_slot * plan.slots * meta.kv_bytes_per_token() <= GIB // 2
    assert "capped by memory" in plan.describe() and "trained for 32768" in plan.describe()


def test_plan_with_ctx_size_or_without_metadata(default_model_path: Path) -> None:
    meta = read_metadata(default_model_path)
    given = plan_context(meta, 2, 4096)
    assert (given.per_slot, given.ctx_size) == (2048, 4096) and "--ctx-size 4096" in given.describe()
    bare = ModelMetadata(path=Path("m"), architecture="x")
    assert plan_context(bare, 3, available=GIB).per_slot == FALLBACK_CONTEXT
    unknown_memory = plan_context(meta, 1, available=None)
    assert unknown_memory.per_slot == 32768 and "not capped" in unknown_memory.reason


@pytest.mark.integration
async def test_default_context_serves_a_prompt_over_4096_tokens(default_model_path: Path) -> None:
    """No --ctx-size: a ~6000-token prompt works (it was a 400 "exceeds the context" with 2048 per slot)."""
    proxy = ProxyProcess([])
    try:
        log = proxy.log()
        assert "context: 32768 tokens per slot × 2 slots (the model's trained context" in log, log[-2000:]
        body = {"messages": [{"role": "user", "content": "Repeat the last word. " + "apple " * 6000}],
                "max_tokens": 4}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            async with session.post(proxy.base_url + "/chat/completions", json=body) as r:
                answer = await r.json()
                assert r.status == 200, answer
            assert answer["usage"]["prompt_tokens"] > 4096
            assert answer["choices"][0]["finish_reason"] in ("length", "stop")
            async with session.get(proxy.url + "/health") as r:
                upstream = (await r.json())["upstream"]
            assert (upstream["context_per_slot"], upstream["slots"]) == (32768, 2)
    finally:
        proxy.stop()


@pytest.mark.integration
async def test_ctx_size_is_still_split_over_the_slots(proxy: ProxyProcess) -> None:
    """The fixtures' --ctx-size 4096 --parallel 2: 2048 per slot, said in the log and /health."""
    assert "context: 2048 tokens per slot × 2 slots (--ctx-size 4096)" in proxy.log()
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.url + "/health") as r:
            assert (await r.json())["upstream"]["context_per_slot"] == 2048
