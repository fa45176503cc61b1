"""`POST /v1/responses`: OpenAI's newer API over the same runs as chat completions.

Input is a string or items (`instructions` becomes the system turn): messages, and in an agent
loop the model's `function_call`s with the client's `function_call_output`s. Function `tools`
go to the aggregator, which may answer with `function_call` items (moa.server.responses.items
maps the shapes). Streams send the typed events clients expect (`response.created`,
`response.output_text.delta`, `response.function_call_arguments.delta`, …,
`response.completed`), each as `event: TYPE` + `data:`. Responses are not stored, so
`previous_response_id` is refused with a 400: send the whole conversation as `input` instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from moa.errors import MoAError
from moa.events import Event, Token, ToolCallDelta
from moa.server.errors import ApiError, bad_request
from moa.server.openapi import RESPONSES_API_RESPONSES
from moa.server.responses.items import (
    input_messages,
    new_id,
    output_items,
    to_response_format,
    to_tools,
    tools_echo,
)
from moa.server.responses.stream import Numbered, StreamedItems
from moa.server.runs import ChatRun, Served, new_run, wants_trace
from moa.server.served import Shapes
from moa.server.sse import finish_reason
from moa.trace import Result
from moa.types import Answering, Message, Sampling, Usage


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # fields a MoA cannot act on are ignored

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    stream: bool | None = None
    previous_response_id: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None  # {"format": …}: structured output
    moa_trace: bool | None = None
    moa_max_cost_usd: Annotated[float, Field(gt=0)] | None = None


def to_messages(request: ResponsesRequest) -> list[Message]:
    if request.previous_response_id is not None:
        raise bad_request(
            "previous_response_id is not supported: moa does not store responses — send the "
            "whole conversation as `input`",
            param="previous_response_id",
        )
    extra = request.model_extra or {}
    wants_logprobs = "message.output_text.logprobs" in (extra.get("include") or [])
    if extra.get("top_logprobs") or wants_logprobs:
        # Honoured on chat completions only; here it would be dropped without a word.
        raise bad_request(
            "logprobs are not supported on /v1/responses — ask /v1/chat/completions with "
            "`logprobs` / `top_logprobs`",
            param="top_logprobs" if extra.get("top_logprobs") else "include",
        )
    messages = (
        [Message(role="system", content=request.instructions)] if request.instructions else []
    )
    if isinstance(request.input, str):
        messages.append(Message(role="user", content=request.input))
    else:
        messages += input_messages(request.input)
    if not messages or messages[-1]["role"] not in ("user", "tool"):
        raise bad_request(
            "the input must end with a user message (or a function_call_output)", param="input"
        )
    return messages


def to_answering(request: ResponsesRequest) -> Answering:
    """What the request asks of the final answer: its function tools and `text.format`."""
    tools = None
    if request.tools or request.tool_choice not in (None, "auto", "none"):
        tools = to_tools(request.tools or [], request.tool_choice, request.parallel_tool_calls)
    return Answering(tools=tools, response_format=to_response_format(request.text))


def usage_body(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


@dataclass
class ResponsesRun(ChatRun):
    """A run answered in the Responses API's shapes."""

    id: str = field(default_factory=lambda: new_id("resp"))
    message_id: str = field(default_factory=lambda: new_id("msg"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    # The request's tool and text settings, which a response repeats.
    settings: dict[str, Any] = field(default_factory=dict)

    def response(
        self, status: str, output: list[dict[str, Any]], result: Result | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            **self.settings,
            "error": None,
            "incomplete_details": None,
            "usage": usage_body(result.usage) if result is not None else None,
        }
        if status == "incomplete":
            body["incomplete_details"] = {"reason": "max_output_tokens"}
        if result is not None:
            body["moa"] = self._extension(result)
        return body

    def _error(self, exc: MoAError) -> ApiError:
        error = super()._error(exc)
        if error.param == "response_format":  # chat's name for it; here it is `text.format`
            error.param = "text.format"
            error.message = error.message.replace("response_format", "text.format", 1)
        return error

    def _body(self, result: Result) -> dict[str, Any]:
        status = _status(result)
        choice = result.choices[0] if result.choices else None
        output = output_items(self.message_id, choice, status)
        return self.response(status, output, result)

    def _shapes(self) -> Shapes:
        return ResponsesShapes(self)


class ResponsesShapes(Shapes):
    """A run's typed events, numbered: `response.created` and `response.in_progress`, the
    output items of the first choice as they grow, `response.completed` (or `.incomplete`);
    a failure as `response.failed` then `error`."""

    def __init__(self, run: ResponsesRun) -> None:
        self.run = run
        self.write = Numbered()
        self.items = StreamedItems(self.write, run.message_id)

    def opening(self) -> Iterator[str]:
        yield self.write("response.created", response=self.run.response("in_progress", []))
        yield self.write("response.in_progress", response=self.run.response("in_progress", []))

    def of(self, item: Event) -> Iterator[str]:
        if isinstance(item, Token) and item.choice == 0:
            yield from self.items.add_text(item.text)
        elif isinstance(item, ToolCallDelta) and item.choice == 0:
            yield from self.items.add_calls(item.deltas)

    def ending(self, result: Result) -> Iterator[str]:
        final_status = _status(result)
        yield from self.items.finish(final_status)
        final = self.run.response(final_status, self.items.items, result)
        yield self.write(f"response.{final_status}", response=final)

    def error(self, exc: MoAError) -> ApiError:
        return self.run._error(exc)

    def failed(self, error: ApiError, result: Any) -> Iterator[str]:
        self.items.close("incomplete")
        failed = self.run.response("failed", self.items.items)
        failed["error"] = {"code": error.code or "server_error", "message": error.message}
        failed["moa"] = error.moa
        yield self.write("response.failed", response=failed)
        yield self.write("error", code=error.code, message=error.message, param=error.param)


def _status(result: Result) -> str:
    return "incomplete" if finish_reason(result) == "length" else "completed"


def _settings(request: ResponsesRequest) -> dict[str, Any]:
    """The settings a response repeats: as asked, OpenAI's defaults otherwise."""
    return {
        "text": request.text or {"format": {"type": "text"}},
        "tools": tools_echo(request.tools),
        "tool_choice": request.tool_choice or "auto",
        "parallel_tool_calls": request.parallel_tool_calls is not False,
    }


def add_responses_route(
    app: FastAPI, served: Served, model_not_found: Callable[[str], ApiError]
) -> None:
    @app.post("/v1/responses", response_model=None, responses=RESPONSES_API_RESPONSES)
    async def create_response(
        body: ResponsesRequest,
        request: Request,
        x_moa_trace: Annotated[str | None, Header()] = None,
    ) -> Response:
        if body.model not in served.mixtures:
            raise model_not_found(body.model)
        messages, answering = to_messages(body), to_answering(body)
        run = new_run(
            ResponsesRun,
            served,
            body.model,
            messages,
            Sampling(
                temperature=body.temperature,
                max_tokens=body.max_output_tokens,
                top_p=body.top_p,
            ),
            trace=wants_trace(body.moa_trace, x_moa_trace),
            max_cost_usd=body.moa_max_cost_usd,
            answering=answering,
        )
        run.settings = _settings(body)
        if body.stream:
            return await run.stream(request.receive)
        return await run.respond(request.receive)
