"""Wire types every OpenAI surface shares: errors, the model list, usage, and request parsing.

Chat Completions, legacy completions and embeddings each have their own ``protocol`` module;
what they have in common is declared once here, and ``GET /openapi.json`` is generated from
these very models.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from oaiproxy.errors import APIError, BadRequest


class LenientModel(BaseModel):
    """A request part: unknown fields are ignored, as OpenAI-compatible servers are expected to."""

    model_config = ConfigDict(extra="ignore")


class FieldRules(BaseModel):
    """What an OpenAI surface does with the API's fields it cannot honour, and with its bookkeeping ones.

    ``UNSUPPORTED``: field -> (the values that ask for nothing beyond what oaiproxy does anyway, why
    the others cannot be honoured); such a field is refused by name rather than silently ignored.
    ``BOOKKEEPING``: fields accepted and logged, changing nothing in the answer.
    """

    UNSUPPORTED: ClassVar[dict[str, tuple[tuple[Any, ...], str]]] = {}
    BOOKKEEPING: ClassVar[tuple[str, ...]] = ()

    def refuse_unsupported(self) -> None:
        for name, (allowed, why) in self.UNSUPPORTED.items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise BadRequest(f"'{name}' is not supported by oaiproxy: {why}", param=name,
                                 code="unsupported_parameter")

    def check_metadata(self) -> None:
        """OpenAI's bound on ``metadata``: at most 16 pairs."""
        metadata = getattr(self, "metadata", None)
        if metadata is not None and len(metadata) > 16:
            raise BadRequest("'metadata' holds at most 16 pairs", param="metadata", code="invalid_value")

    def bookkeeping(self) -> dict[str, Any]:
        """The accepted-and-logged fields that were sent, for the log line."""
        return {name: getattr(self, name) for name in self.BOOKKEEPING if getattr(self, name) is not None}


# ---------------------------------------------------------------- errors


class ErrorObject(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every failure, whatever its status: OpenAI's error JSON."""

    error: ErrorObject

    @classmethod
    def make(cls, message: str, type_: str = "invalid_request_error", param: str | None = None,
             code: str | None = None) -> ErrorResponse:
        return cls(error=ErrorObject(message=message, type=type_, param=param, code=code))

    @classmethod
    def of(cls, exc: APIError) -> ErrorResponse:
        return cls.make(exc.message, exc.type, exc.param, exc.code)


# ---------------------------------------------------------------- models


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


# ---------------------------------------------------------------- shared request parts


class StreamOptions(LenientModel):
    include_usage: bool = False


class SamplingChecks(BaseModel):
    """Checks shared by chat and legacy completion requests (both have ``stop`` and ``logit_bias``)."""

    @field_validator("stop", check_fields=False)
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > 16:
            raise ValueError("at most 16 stop sequences")
        return value

    @field_validator("logit_bias", check_fields=False)
    @classmethod
    def _bias_range(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (value or {}).items():
            if not -100 <= bias <= 100:
                raise ValueError(f"bias for token {token} must be between -100 and 100")
        return value


def check_text_or_tokens(value: Any) -> Any:
    """One clear message for OpenAI's four prompt/input shapes instead of pydantic's per-branch noise."""
    shapes = "a string, a list of strings, a list of token ids, or a list of token-id lists"
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise ValueError(f"must be {shapes}")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value
    for i, item in enumerate(value):
        if isinstance(item, str):
            continue
        if isinstance(item, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            continue
        raise ValueError(f"item [{i}] is neither a string nor a list of token ids (must be {shapes})")
    return value


def arguments_as_json_text(value: Any) -> Any:
    """A call's ``arguments`` as the wire's JSON string: some clients send the arguments object itself
    (a ``mode="before"`` validator for the history's calls)."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value


# ---------------------------------------------------------------- shared response parts


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)


# ---------------------------------------------------------------- parsing


def _loc_to_param(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[...]", "function-after[...]") or str(part).startswith(
                ("list[", "function-", "literal[", "union[", "tagged-union[", "dict[")) or (
                isinstance(part, str) and part.startswith("<") and part.endswith(">")):
            continue  # pydantic's union branch labels (and our own discriminator tags, "<name>") say nothing
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def parse_request(model: type[BaseModel], data: Any) -> Any:
    """Validate a decoded JSON body; a :class:`BadRequest` naming the first bad field otherwise."""
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", param="body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = _loc_to_param(first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            msg = "field required"
        raise BadRequest(f"invalid value for '{param}': {msg}", param=param, code="invalid_value") from None


__all__ = ["ErrorObject", "ErrorResponse", "FieldRules", "LenientModel", "Model", "ModelList", "PromptTokensDetails",
           "SamplingChecks", "StreamOptions", "Usage", "arguments_as_json_text", "check_text_or_tokens",
           "parse_request"]
