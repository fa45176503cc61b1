"""Errors in Anthropic's shape, for every path under `/v1/messages`:

    {"type": "error", "error": {"type": "invalid_request_error", "message": "…"},
     "request_id": "req_…", "moa": {…}}

The type follows the status as Anthropic's does (its SDKs raise their typed errors from the
status): 400 invalid_request_error, 401 authentication_error, 403 permission_error, 404
not_found_error, 413 request_too_large, 429 rate_limit_error (this server's run slots are
full), 529 overloaded_error (the upstream providers throttled every call the run needed), any
other 5xx api_error. The `moa` extension (what failed and why) is kept beside it.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.responses import Response

from moa.server.errors import ApiError

PREFIX = "/v1/messages"
OVERLOADED = 529
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    OVERLOADED: "overloaded_error",
}
# What an upstream says when it is busy rather than broken (moa.server.failures' reasons).
_THROTTLED = {"rate_limited"}


def error_type(status: int) -> str:
    if status in _TYPES:
        return _TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def overloaded(error: ApiError) -> bool:
    """A run that failed only because its upstreams throttled it: worth a retry later."""
    failed = (error.moa or {}).get("failed_models") or []
    return error.status == 502 and bool(failed) and all(f["reason"] in _THROTTLED for f in failed)


class AnthropicError(ApiError):
    """An `ApiError` that leaves in Anthropic's shape."""

    @classmethod
    def of(cls, error: ApiError) -> AnthropicError:
        if isinstance(error, AnthropicError):
            return error
        status = OVERLOADED if overloaded(error) else error.status
        out = cls(
            status,
            error.message,
            type=error_type(status),
            param=error.param,
            code=error.code,
            headers=error.headers,
            moa=error.moa,
        )
        out.headers.setdefault("request-id", f"req_{uuid.uuid4().hex[:24]}")
        return out

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "error",
            "error": {"type": self.type, "message": self.message},
            "request_id": self.headers.get("request-id"),
        }
        if self.moa is not None:
            body["moa"] = self.moa
        return body


def render(path: str, error: ApiError) -> Response:
    """An error response in the shape of the API that `path` belongs to."""
    if path == PREFIX or path.startswith(PREFIX + "/"):
        return AnthropicError.of(error).response()
    return error.response()


def stream_error(error: ApiError) -> dict[str, Any]:
    """The data of an `error` event, once a stream's headers are sent."""
    shaped = AnthropicError.of(error)
    return {"type": "error", "error": {"type": shaped.type, "message": shaped.message}}
