"""moa's errors (and the server's own refusals) as OpenAI-shaped HTTP errors.

This is the one place where an exception becomes a status code: the engine raises data-carrying
errors, the server edge decides what a client sees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from moa.errors import (
    AggregatorFailedError,
    BudgetExceededError,
    ConfigError,
    DegradedRunError,
    InputError,
    LayerFailedError,
    MoAError,
    ProviderError,
    UnpricedModelError,
)
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
    """The HTTP face of an engine error: the request's fault is 4xx, the upstreams' is 502."""
    if isinstance(exc, InputError):
        return bad_request(str(exc), param=getattr(exc, "param", "messages"))
    if isinstance(exc, BudgetExceededError):
        # The request (its prompt, max_tokens or budget) asks for more than the budget allows.
        return bad_request(str(exc), param="moa_max_cost_usd", code="budget_exceeded")
    if isinstance(exc, UnpricedModelError):
        return bad_request(str(exc), param="moa_max_cost_usd", code="price_unknown")
    if isinstance(exc, ConfigError):
        # The request was fine; the server's recipe or environment is not.
        return ApiError(500, str(exc), type="server_error", code="moa_config_error")
    if isinstance(exc, DegradedRunError):
        # Members lost upstream, and the recipe refuses to answer without them.
        headers = degraded_header(exc.result)
        return ApiError(502, str(exc), type="server_error", code="degraded", headers=headers)
    if isinstance(exc, LayerFailedError):
        code = "layer_failed"
    elif isinstance(exc, AggregatorFailedError):
        code = "aggregator_failed"
        message = f'{exc} (send "moa_trace": true to get the trace with the error)'
        return ApiError(502, message, type="server_error", code=code)
    elif isinstance(exc, ProviderError):
        code = "upstream_failed"
    else:
        code = "run_failed"
    return ApiError(502, str(exc), type="server_error", code=code)
