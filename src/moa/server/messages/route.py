"""`POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API over the
same runs as chat completions, so the Anthropic SDKs, Claude Code (`ANTHROPIC_BASE_URL`) and
the agent frameworks built on them can ask any recipe. The layers, when asked for
(`moa_layers`, `X-MoA-Layers`, the recipe's `show_layers`, or the request's `thinking`), come
as a `thinking` block before the answer. The `anthropic-version` header is accepted whatever
its value: one shape is served.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from starlette.responses import JSONResponse, Response

from moa.errors import MoAError
from moa.events import Done, Event, Token, ToolCallDelta
from moa.server.errors import ApiError
from moa.server.messages import reply
from moa.server.messages.errors import AnthropicError, stream_error
from moa.server.messages.request import (
    CountTokensRequest,
    MessagesRequest,
    asks_thinking,
    to_answering,
    to_messages,
    to_sampling,
)
from moa.server.messages.stream import Blocks, event
from moa.server.reasoning import REASONING, LayerNarrator, layers_mode, narrate
from moa.server.runs import ChatRun, Served, new_run, wants_trace
from moa.server.served import Shapes
from moa.tokens import estimate_tokens, messages_tokens
from moa.trace import Result


@dataclass
class MessagesRun(ChatRun):
    """A run answered in the Messages API's shapes."""

    id: str = field(default_factory=lambda: reply.new_id("msg"))

    def _error(self, exc: MoAError) -> ApiError:
        return AnthropicError.of(super()._error(exc))

    def _body(self, result: Result) -> dict[str, Any]:
        layers = narrate(result.calls, self.labels()) if self.reasoning else None
        body = reply.body(self.id, self.model, result, layers)
        body["moa"] = self._extension(result)
        return body

    def _shapes(self) -> Shapes:
        return MessagesShapes(self)


class MessagesShapes(Shapes):
    """A run's Anthropic events: `message_start` and `ping`, the thinking block (the layers,
    when asked), the first choice's text and tool-use blocks, `message_delta` with the stop
    reason and usage, `message_stop`; a failure as an `error` event."""

    def __init__(self, run: MessagesRun) -> None:
        self.run = run
        self.blocks = Blocks()
        self.narrator = LayerNarrator(run.labels()) if run.reasoning else None

    def opening(self) -> Iterator[str]:
        yield event(
            "message_start", message=reply.message(self.run.id, self.run.model, [], None, None)
        )
        yield event("ping")

    def of(self, item: Event) -> Iterator[str]:
        if isinstance(item, Done):
            return
        if self.narrator is not None and (thought := self.narrator.feed(item)):
            yield from self.blocks.thinking(thought)
        elif isinstance(item, Token) and item.choice == 0 and item.text:
            yield from self.blocks.text(item.text)
        elif isinstance(item, ToolCallDelta) and item.choice == 0:
            yield from self.blocks.calls_delta(item.deltas)

    def ending(self, result: Result) -> Iterator[str]:
        yield from self.blocks.finish()
        choice = result.choices[0] if result.choices else None
        delta = reply.stop_fields(choice)
        usage = reply.usage_body(result.usage)
        yield event("message_delta", delta=delta, usage=usage, moa=self.run._extension(result))
        yield event("message_stop")

    def error(self, exc: MoAError) -> ApiError:
        return self.run._error(exc)

    def failed(self, error: ApiError, result: Any) -> Iterator[str]:
        # Headers are sent: Anthropic reports a failure mid-stream as an `error` event.
        yield event("error", **{**stream_error(error), "moa": error.moa})


def _layers(body: MessagesRequest, header: str | None, recipe_value: str) -> bool:
    """The layers are shown when asked as on chat completions, or when the client turned
    Anthropic's extended thinking on (unless `moa_layers` or the header says off)."""
    asked = body.moa_layers if body.moa_layers is not None else header
    if asked is None and asks_thinking(body):
        return True
    return layers_mode(body.moa_layers, header, recipe_value) == REASONING


def add_messages_route(
    app: FastAPI, served: Served, model_not_found: Callable[[str], ApiError]
) -> None:
    @app.post("/v1/messages", response_model=None)
    async def create_message(
        body: MessagesRequest,
        request: Request,
        x_moa_trace: Annotated[str | None, Header()] = None,
        x_moa_layers: Annotated[str | None, Header()] = None,
        anthropic_version: Annotated[str | None, Header()] = None,
    ) -> Response:
        if body.model not in served.mixtures:
            raise model_not_found(body.model)
        messages = to_messages(body.system, body.messages)
        answering = to_answering(body)
        run = new_run(
            MessagesRun,
            served,
            body.model,
            messages,
            to_sampling(body),
            trace=wants_trace(body.moa_trace, x_moa_trace),
            max_cost_usd=body.moa_max_cost_usd,
            answering=answering,
            reasoning=_layers(body, x_moa_layers, served.recipes[body.model].show_layers),
        )
        if body.stream:
            return await run.stream(request.receive)
        return await run.respond(request.receive)

    @app.post("/v1/messages/count_tokens", response_model=None)
    async def count_tokens(body: CountTokensRequest) -> Response:
        """The request's input tokens as the recipe's aggregator counts them (its own
        tokenizer where its provider has one, else moa's estimate, which errs high)."""
        if body.model not in served.mixtures:
            raise model_not_found(body.model)
        mixture = served.mixtures[body.model]
        messages = to_messages(body.system, body.messages)
        tools = to_answering(body).tools
        profile = await mixture.caller.profile(mixture.aggregator.agent)
        tokens = messages_tokens(messages, profile.count_tokens)
        calls = [m["tool_calls"] for m in messages if m.get("tool_calls")]
        if tools is not None:
            tokens += estimate_tokens(json.dumps(list(tools.specs)))
        if calls:
            tokens += estimate_tokens(json.dumps(calls))
        return JSONResponse({"input_tokens": tokens})
