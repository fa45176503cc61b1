"""moa's errors (and the server's own refusals) as OpenAI-shaped HTTP errors.

This is the one place where an exception becomes a status code: the engine raises data-carrying
errors, the server edge decides what a client sees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from moa.errors import DegradedRunError, MoAError
from moa.failures import classify
from moa.server.extension import degraded_header


class ApiError(Exception):
    """A refusal or failure to answer, in the fields OpenAI's error body has."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        moa: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.moa = moa  # the `moa` extension: what failed and why, beside OpenAI's `error`
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        if self.moa is not None:
            body["moa"] = self.moa
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


# An error as the response of the API a path belongs to (OpenAI's shape, or Anthropic's under
# /v1/messages: moa.server.messages.errors.render).
Render = Callable[[str, "ApiError"], Response]


def openai_shape(path: str, error: ApiError) -> Response:
    return error.response()


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def from_moa_error(exc: MoAError) -> ApiError:
    """The HTTP face of an engine error (moa.failures' row): the request's fault is 4xx (an
    InputError may name its own `param`), the server's recipe 500, the upstreams' 502."""
    row = classify(exc)
    message = f"{exc} ({row.http_hint})" if row.http_hint else str(exc)
    param = getattr(exc, "param", row.param)
    # A degraded run says which members it lost in the same header a successful one does.
    headers = degraded_header(exc.result) if isinstance(exc, DegradedRunError) else None
    return ApiError(row.status, message, type=row.type, param=param, code=row.code, headers=headers)
