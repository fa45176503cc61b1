"""One MoA run behind one HTTP request: as a single JSON body, or as an SSE stream.

Streams hold back the response headers until the aggregator's first token, so a run that fails
before answering (every proposer down, aggregator refused) still gets a real HTTP status; after
that, a failure can only be reported in-band, as OpenAI does, with an `error` event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

from starlette.responses import JSONResponse, Response
from starlette.types import Receive

from moa.engine.mixture import MoA
from moa.engine.options import RunOptions
from moa.errors import MoAError
from moa.events import Done, Event
from moa.providers.registry import Registry
from moa.recipes.schema import Recipe
from moa.server.errors import ApiError, from_moa_error
from moa.server.extension import degraded_header, extension, failure_extension
from moa.server.limits import (
    ClientGone,
    EventStream,
    RunResponse,
    RunSlots,
    Slot,
    until_disconnect,
)
from moa.server.metrics import Metrics
from moa.server.reasoning import LayerNarrator, with_reasoning
from moa.server.security import Redactor
from moa.server.served import CLIENT_CLOSED, Shapes, run_sse, until_first_token
from moa.server.sse import DONE, Completion, Pieces, choice_finish, event
from moa.trace import Result
from moa.types import Answering, Message, Sampling

log = logging.getLogger("moa.server")

TRUTHY = {"1", "true", "yes", "on"}  # a header that says yes


@dataclass(frozen=True)
class Served:
    """What every route that runs a recipe shares: the recipes, built, and the server's
    slots, counters and redaction."""

    recipes: Mapping[str, Recipe]
    mixtures: Mapping[str, MoA]
    registry: Registry
    slots: RunSlots
    metrics: Metrics
    redactor: Redactor
    # Each recipe's aggregator answering alone, for side requests (moa.server.side).
    alone: Mapping[str, MoA] = field(default_factory=dict)


def run_options(
    recipe: Recipe,
    requested: Sampling,
    *,
    max_cost_usd: float | None,
    answering: Answering | None,
) -> RunOptions:
    """A request's options for a run of `recipe`: its sampling reaches the aggregator only — a
    Self-MoA recipe's varied proposers survive a client's temperature=0 — unless the recipe
    says `request_sampling = "all"`; its `moa_max_cost_usd` is the run's budget (None: the
    recipe's)."""
    every, final = Sampling(), requested
    if recipe.request_sampling == "all":
        every, final = requested, Sampling()
    return RunOptions.of(
        sampling=every,
        aggregator_sampling=final,
        max_cost_usd=max_cost_usd,
        answering=answering,
    )


def wants_trace(asked: bool | None, header: str | None) -> bool:
    """The trace is asked for by the body's `moa_trace` or an `X-MoA-Trace: true` header."""
    return bool(asked) or (header or "").strip().lower() in TRUTHY


@dataclass
class ChatRun:
    model: str  # the recipe name the client asked for
    moa: MoA
    messages: list[Message]
    options: RunOptions  # what the request asks of the run (sampling, budget, answering)
    slot: Slot
    metrics: Metrics
    redactor: Redactor
    trace: bool = False
    include_usage: bool = False
    reasoning: bool = False  # the proposals as `reasoning_content` (server/reasoning.py)
    started: float = field(default_factory=time.perf_counter)

    async def respond(self, receive: Receive) -> Response:
        """Answer with one `chat.completion` body once the run has ended."""
        return RunResponse(self.slot, lambda: self._respond(receive))

    async def stream(self, receive: Receive) -> Response:
        """Answer with SSE once the first token is in, or with an error."""
        return RunResponse(self.slot, lambda: self._stream(receive))

    async def _respond(self, receive: Receive) -> Response:
        try:
            result = await until_disconnect(
                receive,
                self.moa.result(self.messages, self.options),
            )
        except ClientGone:
            self._finish(False, CLIENT_CLOSED, None, "client_disconnected")
            return Response(status_code=CLIENT_CLOSED)
        except MoAError as exc:
            return self._failed(False, exc).response()
        self._finish(False, 200, result, None)
        return JSONResponse(self._body(result), headers=degraded_header(result))

    def _body(self, result: Result) -> dict[str, Any]:
        """The whole answer as one body (the Responses API shapes its own)."""
        body = Completion(self.model).body(result.choices, result.usage, self._extension(result))
        return with_reasoning(body, result, self.labels()) if self.reasoning else body

    async def _stream(self, receive: Receive) -> Response:
        # Only a thinking block shows the proposers' words.
        options = replace(self.options, proposal_deltas=self.reasoning)
        events = aiter(self.moa.events(self.messages, options))
        try:
            head = await until_disconnect(receive, until_first_token(events, self.reasoning))
        except ClientGone:
            self._finish(True, CLIENT_CLOSED, None, "client_disconnected")
            return Response(status_code=CLIENT_CLOSED)
        except MoAError as exc:
            return self._failed(True, exc).response()
        return EventStream(self._sse(head, events))

    def _sse(self, head: list[Event], events: AsyncIterator[Event]) -> AsyncIterator[str]:
        return run_sse(self._shapes(), head, events, partial(self._finish, True))

    def _shapes(self) -> Shapes:
        """This API's frames for one stream (each API's run answers with its own)."""
        return ChatShapes(self)

    def labels(self) -> dict[tuple[int, int], str]:
        """How the proposers are named in the layers told as reasoning (`MoA.labels`)."""
        return self.moa.labels(self.options)

    def _trace(self, result: Result) -> dict[str, Any] | None:
        if not self.trace:
            return None
        trace: dict[str, Any] = self.redactor.data(result.to_dict())
        return trace

    def _extension(self, result: Result) -> dict[str, Any]:
        """The `moa` member of a response: cost and failures always, the trace if asked."""
        data = self.redactor.data(extension(result))
        return {**data, **(self._trace(result) or {})}

    def _error(self, exc: MoAError) -> ApiError:
        """The failure as the client sees it; with the trace so far, when it was asked for."""
        error = from_moa_error(exc)
        error.message = self.redactor.text(error.message)
        error.moa = self.redactor.data(failure_extension(exc))
        result = getattr(exc, "result", None)
        if isinstance(result, Result):
            error.moa.update(self._trace(result) or {})
        return error

    def _failed(self, stream: bool, exc: MoAError) -> ApiError:
        error = self._error(exc)
        self._finish(stream, error.status, getattr(exc, "result", None), error.code)
        log.warning("run of %s failed (%s): %s", self.model, error.status, error.message)
        return error

    def _finish(self, stream: bool, status: int, result: Result | None, code: str | None) -> None:
        seconds = time.perf_counter() - self.started
        self.metrics.request(self.model, stream, status, seconds if status == 200 else None)
        if code is not None:
            self.metrics.error(code)
        if result is not None:
            self.metrics.run(self.model, result)
        usage = result.usage if result is not None else None
        log.info(
            "%s stream=%s status=%d %.3fs calls=%d tokens=%d/%d",
            self.model,
            stream,
            status,
            seconds,
            len(result.calls) if result is not None else 0,
            usage.input_tokens if usage else 0,
            usage.output_tokens if usage else 0,
        )


R = TypeVar("R", bound=ChatRun)


def new_run(
    kind: type[R],
    served: Served,
    model: str,
    messages: list[Message],
    requested: Sampling,
    *,
    trace: bool,
    max_cost_usd: float | None,
    answering: Answering | None = None,
    include_usage: bool = False,
    reasoning: bool = False,
    side: bool = False,
) -> R:
    """A run of the served recipe `model` for one request, in the API shape `kind` answers
    in (`side`: a side request, its aggregator alone). Takes a run slot (429 when none is
    free), so call it last, once the request is known to be good: the slot is freed when
    the answer has been sent."""
    options = run_options(
        served.recipes[model], requested, max_cost_usd=max_cost_usd, answering=answering
    )
    if side:
        log.info("%s: a side request, answered by its aggregator alone", model)
    return kind(
        model=model,
        moa=served.alone[model] if side else served.mixtures[model],
        messages=messages,
        options=options,
        slot=served.slots.take(),
        metrics=served.metrics,
        redactor=served.redactor,
        trace=trace,
        include_usage=include_usage,
        reasoning=reasoning,
    )


class ChatShapes(Shapes):
    """A run's `chat.completion.chunk`s: the role chunk first, so a thinking block has a
    message to belong to; the layers as `reasoning_content`, when asked; each choice's
    finish chunk, the usage chunk, the trace, `[DONE]`; a failure as an `error` event."""

    def __init__(self, run: ChatRun) -> None:
        self.run = run
        self.completion = Completion(run.model)
        self.narrator = LayerNarrator(run.labels()) if run.reasoning else None
        self.pieces = Pieces(self.completion, run.include_usage)

    def opening(self) -> Iterator[str]:
        yield self.pieces.start(0)

    def of(self, item: Event) -> Iterator[str]:
        narrator = None if isinstance(item, Done) else self.narrator
        if narrator is not None and (thought := narrator.feed(item)):
            usage_nulls = self.run.include_usage
            yield self.completion.chunk({"reasoning_content": thought}, with_usage=usage_nulls)
        yield from self.pieces.of(item)

    def ending(self, result: Result) -> Iterator[str]:
        run, completion = self.run, self.completion
        ext = run.redactor.data(extension(result))
        last = len(result.choices) - 1
        for index, choice in enumerate(result.choices):
            yield completion.finish_chunk(
                choice_finish(choice),
                with_usage=run.include_usage,
                index=index,
                moa=ext if index == last else None,
            )
        if run.include_usage:
            yield completion.usage_chunk(result.usage, ext)
        trace = run._trace(result)
        if trace is not None:
            yield completion.trace_event(trace)
        yield DONE

    def error(self, exc: MoAError) -> ApiError:
        return self.run._error(exc)

    def failed(self, error: ApiError, result: Any) -> Iterator[str]:
        # Headers are sent: the SDKs raise on an `error` event, as for OpenAI's own.
        yield event(error.body())
