"""GGUF metadata: real files from the llama.cpp sdist and the default model, and broken ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from oaiproxy.runtime.gguf_meta import GGUFError, read_metadata


def test_default_model_metadata(default_model_path: Path) -> None:
    meta = read_metadata(default_model_path)
    assert meta.architecture == "gemma3"
    assert meta.context_length == 32768
    assert (meta.bos_token, meta.eos_token) == ("<bos>", "<eos>")
    assert meta.chat_template is None  # a base model: the proxy falls back to its default template


@pytest.mark.parametrize(
    "name, arch, bos, eos",
    [
        ("ggml-vocab-llama-bpe.gguf", "llama", "<|begin_of_text|>", "<|end_of_text|>"),
        ("ggml-vocab-phi-3.gguf", "phi3", "<s>", "<|endoftext|>"),
        ("ggml-vocab-qwen2.gguf", "qwen2", "<|endoftext|>", "<|endoftext|>"),
    ],
)
def test_vocab_files(llama_models_dir: Path, name: str, arch: str, bos: str, eos: str) -> None:
    meta = read_metadata(llama_models_dir / name)
    assert (meta.architecture, meta.bos_token, meta.eos_token) == (arch, bos, eos)


def test_chat_template(llama_models_dir: Path) -> None:
    qwen = read_metadata(llama_models_dir / "ggml-vocab-qwen2.gguf")
    assert qwen.chat_template and "<|im_start|>" in qwen.chat_template
    # Command R also has named variants (tool_use, rag): the chat template is the default one, without tools
    command_r = read_metadata(llama_models_dir / "ggml-vocab-command-r.gguf")
    assert command_r.chat_template and "<|START_OF_TURN_TOKEN|>" in command_r.chat_template
    assert "tools" not in command_r.chat_template


def test_not_gguf(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 definitely a zip file")
    with pytest.raises(GGUFError, match=r"model\.gguf: not a GGUF file"):
        read_metadata(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    with pytest.raises(GGUFError, match="empty.gguf: not a GGUF file"):
        read_metadata(path)


@pytest.mark.parametrize("keep", [10, 200, 5000, 60_000])
def test_truncated_file(llama_models_dir: Path, tmp_path: Path, keep: int) -> None:
    data = (llama_models_dir / "ggml-vocab-qwen2.gguf").read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[:keep])
    with pytest.raises(GGUFError, match=r"cut\.gguf: truncated GGUF file"):
        read_metadata(path)


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match="no such file"):
        read_metadata(tmp_path / "nope.gguf")
    with pytest.raises(GGUFError, match="is a directory"):
        read_metadata(tmp_path)
