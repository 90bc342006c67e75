"""The failures a client can see, each with its HTTP status and OpenAI error ``type``.

Every one reaches the client as ``{"error": {message, type, param, code}}``: the wire shape is
:class:`oaiproxy.api.protocol.ErrorResponse`, built from the exception by the HTTP layer.
"""

from __future__ import annotations


class APIError(Exception):
    """An error to return to the client with a given HTTP status."""

    status = 500
    type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 status: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}
        if status is not None:
            self.status = status


class BadRequest(APIError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(APIError):
    status = 401
    type = "authentication_error"

    def __init__(self, message: str = "Incorrect or missing API key. Send it as 'Authorization: Bearer KEY'."):
        super().__init__(message, code="invalid_api_key")


class NotFound(APIError):
    status = 404
    type = "invalid_request_error"


class Overloaded(APIError):
    status = 429
    type = "rate_limit_error"


class UpstreamError(APIError):
    """llama-server failed or answered something unusable."""

    status = 502
    type = "upstream_error"


class UpstreamUnavailable(APIError):
    """llama-server is (re)starting or gave up; the client may retry."""

    status = 503
    type = "server_error"


class UpstreamTimeout(APIError):
    status = 504
    type = "upstream_error"


class InternalError(APIError):
    """A bug in the proxy, e.g. a parsed tool call that fails its own schema check."""

    status = 500
    type = "server_error"
