"""Embeddings (``POST /v1/embeddings``): the request and the response."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from oaiproxy.api.protocol import check_text_or_tokens

EmbeddingInput = str | list[int] | list[str | list[int]]


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    input: EmbeddingInput
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    _input_shape = field_validator("input", mode="before")(check_text_or_tokens)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


__all__ = ["Embedding", "EmbeddingInput", "EmbeddingList", "EmbeddingRequest", "EmbeddingUsage"]
