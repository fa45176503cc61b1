"""What the OpenAPI document says beyond the request body: each status a route can answer with
(in OpenAI's error shape), the media types it really sends, the served models and the auth.

The document is served without a key, like /healthz, so tools and the docs page can read it;
with keys configured it says which operations need `Authorization: Bearer KEY`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

# -- response bodies -------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, rate_limit_error or server_error.")
    param: str | None = Field(description="The request field at fault, in OpenAI's notation.")
    code: str | None = Field(description="model_not_found, layer_failed, aggregator_failed, …")


class ErrorBody(BaseModel):
    """OpenAI's error shape: the SDKs raise their typed errors from it."""

    error: ErrorDetail


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    capabilities: dict[str, bool] = Field(description="What a request to this model may use.")
    moa: dict[str, Any] = Field(description="The recipe: layers, proposers, aggregator, budget.")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"]
    models: list[str]
    runs_in_progress: int
    max_concurrent_runs: int


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="The arguments, as JSON text.")


class ToolCall(BaseModel):
    id: str
    type: Literal["function"]
    function: FunctionCall


class AnswerMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None = Field(description="null when the answer is only tool calls.")
    refusal: None
    tool_calls: list[ToolCall] = Field(
        default_factory=list, description="Present when the aggregator called tools."
    )


class Logprobs(BaseModel):
    content: list[dict[str, Any]] = Field(description="As the aggregator's provider sent them.")


class Choice(BaseModel):
    index: int
    message: AnswerMessage
    logprobs: Logprobs | None = Field(description="Only when asked for (`logprobs: true`).")
    finish_reason: Literal["stop", "length", "content_filter", "tool_calls"]


class CompletionUsage(BaseModel):
    prompt_tokens: int = Field(description="Summed over every call of the run.")
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice] = Field(min_length=1, description="`n` answers (default 1).")
    usage: CompletionUsage
    moa: dict[str, Any] = Field(
        default_factory=dict,
        description="The run's trace, only when asked for (`moa_trace` or `X-MoA-Trace`).",
    )


# -- responses by status ---------------------------------------------------------------------

_WHY = {
    400: "The request is malformed, or asks for what the model cannot do (non-text content; "
    "tools, response_format or logprobs when its aggregator's provider lacks them); `param` "
    "names the field.",
    401: "No API key, or a wrong one (`Authorization: Bearer KEY`).",
    404: "No such model: `code` is `model_not_found`; GET /v1/models lists the served ones.",
    413: "The request body is larger than the server's limit (`moa serve --max-body-bytes`).",
    429: "The server is running its maximum of MoA runs; retry after `Retry-After` seconds.",
    500: "The server's recipe or environment is broken (`code` moa_config_error).",
    502: "The upstream models failed: `code` is layer_failed (every proposer of a layer), "
    "aggregator_failed (the aggregator and its fallbacks) or upstream_failed.",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}},
    429: {"Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 0}}},
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for the error statuses a route can answer with."""
    return {
        status: {"model": ErrorBody, "description": _WHY[status]}
        | ({"headers": _HEADERS[status]} if status in _HEADERS else {})
        for status in statuses
    }


_SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "string",
            "description": "A `chat.completion.chunk` as JSON (then, if asked for, one with "
            "`usage` and a `moa.trace` object), an OpenAI error object if the run fails after "
            "its first token, and `[DONE]` last.",
        }
    },
}

CHAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ChatCompletion,
        "description": "The answer: one `chat.completion` body, or with `stream: true` a "
        "`text/event-stream` of chunks (each schema below describes one event).",
        "content": {"text/event-stream": {"schema": _SSE_EVENT}},
    },
    **errors(400, 404, 413, 429, 500, 502),
}
RESPONSES_API_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One `response` object, or with `stream: true` a `text/event-stream` of "
        "typed events (`response.created`, `response.output_text.delta`, …, "
        "`response.completed`).",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                        "event": {"type": "string", "description": "The event's `type`."},
                        "data": {"type": "string", "description": "The event, as JSON."},
                    },
                }
            },
        },
    },
    **errors(400, 404, 413, 429, 500, 502),
}
METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus' text exposition format.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


# -- the document ----------------------------------------------------------------------------


# What a request may not carry for a model whose aggregator lacks the capability (the server
# refuses it with a 400 naming the field; see server/capabilities.py).
_WITHOUT: dict[str, tuple[str, dict[str, Any]]] = {
    "tools": ("tools", {"not": {"type": "array", "minItems": 1}}),
    "structured_output": (
        "response_format",
        {
            "not": {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"enum": ["json_object", "json_schema"]}},
            }
        },
    ),
    "logprobs": ("logprobs", {"not": {"const": True}}),
    "n": ("n", {"not": {"type": "integer", "minimum": 2}}),
}


def install(
    app: FastAPI,
    models: Sequence[str],
    *,
    auth: bool,
    open_paths: Sequence[str],
    lacking: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Replace the app's document with the true one: no 422 (every refusal is a 400), the
    served model names, what each model's aggregator cannot take (`lacking`: capability →
    the models without it), and with `auth` the bearer scheme on every operation not open."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            _drop_validation_errors(document)
            _headers_are_strings(document)
            _name_models(document, sorted(models))
            _capability_rules(document, lacking or {})
            if auth:
                _require_bearer(document, open_paths)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, op) for path, item in document["paths"].items() for op in item.values()]


def _drop_validation_errors(document: dict[str, Any]) -> None:
    for _, operation in _operations(document):
        operation["responses"].pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def _headers_are_strings(document: dict[str, Any]) -> None:
    """An optional header is absent, never null: a null in its schema reads as the text "null"."""
    for _, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            schema = parameter["schema"]
            branches = [b for b in schema.get("anyOf", []) if b != {"type": "null"}]
            if parameter["in"] == "header" and len(branches) == 1:
                del schema["anyOf"]
                schema.update(branches[0])


def _name_models(document: dict[str, Any], models: list[str]) -> None:
    """A model the server does not serve is a 404; say which ones it does."""
    request = document["components"]["schemas"]["ChatCompletionRequest"]
    request["properties"]["model"]["enum"] = models
    for parameter in document["paths"]["/v1/models/{model_id}"]["get"]["parameters"]:
        if parameter["name"] == "model_id":
            parameter["schema"]["enum"] = models


def _capability_rules(document: dict[str, Any], lacking: Mapping[str, Sequence[str]]) -> None:
    """A field is refused for exactly the models whose aggregator lacks its capability."""
    request = document["components"]["schemas"]["ChatCompletionRequest"]
    rules = request.setdefault("allOf", [])
    for capability, models in sorted(lacking.items()):
        if not models:
            continue
        field, refused = _WITHOUT[capability]
        rules.append(
            {
                "if": {"required": ["model"], "properties": {"model": {"enum": sorted(models)}}},
                "then": {"properties": {field: refused}},
            }
        )


def _require_bearer(document: dict[str, Any], open_paths: Sequence[str]) -> None:
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
    unauthorized = {
        "description": _WHY[401],
        "headers": _HEADERS[401],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for path, operation in _operations(document):
        if path not in open_paths:
            operation["security"] = [{"bearer": []}]
            operation["responses"]["401"] = unauthorized
