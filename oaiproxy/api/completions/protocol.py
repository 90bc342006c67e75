"""Legacy completions (``POST /v1/completions``): the request, the response and each streamed chunk."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from oaiproxy.api.protocol import SamplingChecks, StreamOptions, Usage, check_text_or_tokens

#: the most choices (prompts × n) one request may ask for; each is a llama-server request
MAX_CHOICES = 64
#: OpenAI's default for this endpoint (chat has none)
DEFAULT_MAX_TOKENS = 16

Prompt = str | list[int] | list[str | list[int]]


class CompletionRequest(SamplingChecks):
    """OpenAI's legacy completions request; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: Prompt
    # ge=1: llama-server always samples one token, so 0 could not be honoured
    max_tokens: int | None = Field(default=DEFAULT_MAX_TOKENS, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=1, ge=1, le=MAX_CHOICES)
    best_of: int | None = Field(default=None, ge=1)
    echo: bool | None = False
    logprobs: int | None = Field(default=None, ge=0, le=20)
    suffix: str | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    @model_validator(mode="after")
    def _null_means_default(self) -> CompletionRequest:
        # OpenAI documents these as nullable; null is the default, not an error
        self.n = 1 if self.n is None else self.n
        self.echo = bool(self.echo)
        self.stream = bool(self.stream)
        return self

    _prompt_shape = field_validator("prompt", mode="before")(check_text_or_tokens)


class CompletionLogprobs(BaseModel):
    """The legacy logprobs shape: parallel lists, one entry per generated token."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length", "content_filter"] | None = None


class TextCompletion(BaseModel):
    """Both the whole response and each streamed chunk (``usage`` only on the last)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[CompletionChoice]
    usage: Usage | None = None


__all__ = ["DEFAULT_MAX_TOKENS", "MAX_CHOICES", "CompletionChoice", "CompletionLogprobs", "CompletionRequest",
           "Prompt", "TextCompletion"]
