"""`POST /v1/responses`: OpenAI's newer API over the same runs as chat completions.

Input is a string or message items (`instructions` becomes the system turn); the answer is one
assistant message. Streams send the typed events clients expect (`response.created`,
`response.output_text.delta`, …, `response.completed`), each as `event: TYPE` + `data:`.
Responses are not stored, so `previous_response_id` is refused with a 400: send the whole
conversation as `input` instead.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from moa.engine import MoA
from moa.errors import MoAError
from moa.events import Done, Event, Token
from moa.recipes.schema import Recipe
from moa.server.errors import ApiError, bad_request
from moa.server.limits import RunSlots
from moa.server.metrics import Metrics
from moa.server.openapi import RESPONSES_API_RESPONSES
from moa.server.runs import CLIENT_CLOSED, Run, split_sampling
from moa.server.security import Redactor
from moa.server.sse import finish_reason
from moa.trace import Result
from moa.types import Message, Role, Sampling, Usage

_TRUTHY = {"1", "true", "yes", "on"}
_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
_TEXT_PARTS = {"input_text", "output_text", "text"}


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields a MoA cannot act on are ignored

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    stream: bool | None = None
    previous_response_id: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    tools: list[Any] | None = None
    moa_trace: bool | None = None
    moa_max_cost_usd: Annotated[float, Field(gt=0)] | None = None


def to_messages(request: ResponsesRequest) -> list[Message]:
    if request.previous_response_id is not None:
        raise bad_request(
            "previous_response_id is not supported: moa does not store responses — send the "
            "whole conversation as `input`",
            param="previous_response_id",
        )
    if request.tools:
        raise bad_request("tools are not supported by moa", param="tools")
    messages = (
        [Message(role="system", content=request.instructions)] if request.instructions else []
    )
    if isinstance(request.input, str):
        messages.append(Message(role="user", content=request.input))
    else:
        messages += [_item(i, item) for i, item in enumerate(request.input)]
    if not messages or messages[-1]["role"] != "user":
        raise bad_request("the input must end with a user message", param="input")
    return messages


def _item(index: int, item: dict[str, Any]) -> Message:
    where = f"input[{index}]"
    kind = item.get("type", "message")
    if kind != "message":
        raise bad_request(f"{where}: items of type {kind!r} are not supported", f"{where}.type")
    role = _ROLES.get(str(item.get("role")))
    if role is None:
        raise bad_request(f"{where}: role must be one of {', '.join(_ROLES)}", f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        return Message(role=role, content=content)
    if not isinstance(content, list):
        raise bad_request(f"{where}: content must be a string or a list", f"{where}.content")
    texts = []
    for j, part in enumerate(content):
        part_type = part.get("type") if isinstance(part, dict) else None
        if part_type not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            raise bad_request(
                f"{where}.content[{j}]: only text parts are supported (got {part_type!r})",
                f"{where}.content[{j}].type",
            )
        texts.append(part["text"])
    return Message(role=role, content="\n".join(texts))


def usage_body(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


@dataclass
class ResponsesRun(Run):
    """A run answered in the Responses API's shapes."""

    id: str = field(default_factory=lambda: f"resp_{uuid.uuid4().hex}")
    message_id: str = field(default_factory=lambda: f"msg_{uuid.uuid4().hex}")
    created_at: int = field(default_factory=lambda: int(time.time()))

    def response(self, status: str, text: str = "", result: Result | None = None) -> dict[str, Any]:
        done = status != "in_progress"
        body: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": [self.message(text, "completed" if done else "in_progress")] if done else [],
            "parallel_tool_calls": False,
            "tool_choice": "none",
            "tools": [],
            "error": None,
            "incomplete_details": None,
            "usage": usage_body(result.usage) if result is not None else None,
        }
        if status == "incomplete":
            body["incomplete_details"] = {"reason": "max_output_tokens"}
            body["output"][0]["status"] = "incomplete"
        if result is not None:
            body["moa"] = self._extension(result)
        return body

    def message(self, text: str, status: str) -> dict[str, Any]:
        content = [] if status == "in_progress" else [_text_part(text)]
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": content,
        }

    def _body(self, result: Result) -> dict[str, Any]:
        return self.response(_status(result), result.text, result)

    async def _sse(self, head: list[Event], events: AsyncIterator[Event]) -> AsyncIterator[str]:
        stream = _Events()
        status: int = CLIENT_CLOSED
        result: Result | None = None
        code: str | None = "client_disconnected"
        parts: list[str] = []
        where = {"item_id": self.message_id, "output_index": 0, "content_index": 0}
        try:
            yield stream("response.created", response=self.response("in_progress"))
            yield stream("response.in_progress", response=self.response("in_progress"))
            item = self.message("", "in_progress")
            yield stream("response.output_item.added", output_index=0, item=item)
            yield stream("response.content_part.added", **where, part=_text_part(""))
            async for item_event in _chain(head, events):
                if isinstance(item_event, Token):
                    parts.append(item_event.text)
                    yield stream(
                        "response.output_text.delta", **where, delta=item_event.text, logprobs=[]
                    )
                elif isinstance(item_event, Done):
                    result = item_event.result
            if result is None:
                raise AssertionError("MoA.stream() always ends with Done or an exception")
            text = "".join(parts)
            yield stream("response.output_text.done", **where, text=text, logprobs=[])
            yield stream("response.content_part.done", **where, part=_text_part(text))
            final = self.response(_status(result), text, result)
            yield stream("response.output_item.done", output_index=0, item=final["output"][0])
            kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
            yield stream(kind, response=final)
            status, code = 200, None
        except MoAError as exc:
            error = self._error(exc)
            status, code, result = error.status, error.code, getattr(exc, "result", None)
            failed = self.response("failed", "".join(parts))
            failed["error"] = {"code": error.code or "server_error", "message": error.message}
            failed["moa"] = error.moa
            yield stream("response.failed", response=failed)
            yield stream("error", code=error.code, message=error.message, param=error.param)
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with suppress(Exception):
                    await aclose()
            self._finish(True, status, result, code)


class _Events:
    """Numbers the events of one stream, as the API does."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> str:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _chain(head: list[Event], rest: AsyncIterator[Event]) -> AsyncIterator[Event]:
    for item in head:
        yield item
        if isinstance(item, Done):
            return
    async for item in rest:
        yield item


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _status(result: Result) -> str:
    return "incomplete" if finish_reason(result) == "length" else "completed"


def add_responses_route(
    app: FastAPI,
    *,
    mixtures: Mapping[str, MoA],
    recipes: Mapping[str, Recipe],
    slots: RunSlots,
    metrics: Metrics,
    redactor: Redactor,
    model_not_found: Callable[[str], ApiError],
) -> None:
    @app.post("/v1/responses", response_model=None, responses=RESPONSES_API_RESPONSES)
    async def create_response(
        body: ResponsesRequest,
        request: Request,
        x_moa_trace: Annotated[str | None, Header()] = None,
    ) -> Response:
        mixture = mixtures.get(body.model)
        if mixture is None:
            raise model_not_found(body.model)
        messages = to_messages(body)
        requested = Sampling(temperature=body.temperature, max_tokens=body.max_output_tokens)
        sampling, aggregator_sampling = split_sampling(recipes[body.model], requested)
        run = ResponsesRun(
            model=body.model,
            moa=mixture,
            messages=messages,
            sampling=sampling,
            aggregator_sampling=aggregator_sampling,
            slot=slots.take(),
            metrics=metrics,
            redactor=redactor,
            trace=bool(body.moa_trace) or (x_moa_trace or "").strip().lower() in _TRUTHY,
            max_cost_usd=body.moa_max_cost_usd,
        )
        if body.stream:
            return await run.stream(request.receive)
        return await run.respond(request.receive)
