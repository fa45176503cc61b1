"""`POST /v1/moa/runs`: one MoA run as Server-Sent Events, one JSON object per engine event.

    data: {"type": "layer.started", "layer": 1, "models": ["fake:a", "fake:b"],
           "labels": ["fake:a", "fake:b"]}
    data: {"type": "proposal.started", "layer": 1, "index": 0, "model": "fake:a"}
    data: {"type": "proposal.delta", "layer": 1, "index": 0, "model": "fake:a", "text": "Par"}
    data: {"type": "proposal.finished", "layer": 1, "index": 0, "model": "fake:a", "call": {…}}
    data: {"type": "aggregator.started", "layer": 2, "model": "fake:agg"}
    data: {"type": "answer.delta", "text": "Paris"}
    data: {"type": "done", "trace": {…}, "usage": {…}, "degraded": false, "answered": 2, …}

A request the server refuses (unknown model, bad body, too many runs) gets an HTTP error as on
/v1/chat/completions; once the stream has started, a failed run ends with an `error` event
carrying the partial trace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from moa import recipes as recipe_lib
from moa.engine.mixture import MoA
from moa.engine.options import RunOptions
from moa.errors import ConfigError, MoAError
from moa.events import (
    AggregatorStarted,
    Event,
    ProposalDelta,
    ProposalFailed,
    ProposalFinished,
    ProposalStarted,
    Token,
    ToolCallDelta,
)
from moa.recipes.schema import Recipe
from moa.server.errors import ApiError, bad_request, from_moa_error
from moa.server.limits import EventStream, RunResponse
from moa.server.models_api import model_not_found
from moa.server.overrides import OverridePolicy, catalog
from moa.server.runs import Served, run_options
from moa.server.schemas import (
    ChatCompletionRequest,
    check_supported,
    to_answering,
    to_messages,
    to_sampling,
)
from moa.server.served import Shapes, run_sse
from moa.server.sse import event as sse_event
from moa.trace import CallRecord, Result
from moa.types import Message

log = logging.getLogger("moa.server")


def add_events_api(app: FastAPI, served: Served) -> None:
    policy = OverridePolicy(served.recipes.values())

    @app.get("/v1/moa/recipes", tags=["moa"])
    async def list_recipes() -> dict[str, Any]:
        """The served recipes (without provider settings), editable and sent back as
        `moa_recipe`; the models they use; the choices of the recipe schema."""
        listing: dict[str, Any] = served.redactor.data(catalog(served.recipes))
        return listing

    @app.post("/v1/moa/runs", response_model=None, tags=["moa"])
    async def runs(body: ChatCompletionRequest, request: Request) -> Response:
        """The chat completions body (plus `moa_recipe`: an edited copy of the recipe `model`
        names, run in its place); answers with Server-Sent Events, one JSON object per engine
        event."""
        check_supported(body)
        if body.model not in served.recipes:
            # Even with `moa_recipe`: the model names a served recipe, so the metrics' labels
            # stay the operator's, not whatever a client writes.
            raise model_not_found(served, body.model)
        override = (body.model_extra or {}).get("moa_recipe")
        recipe = served.recipes[body.model] if override is None else policy.check(override)
        mixture = served.mixtures[body.model] if override is None else _build(recipe, served)
        options = run_options(
            recipe,
            to_sampling(body),
            max_cost_usd=body.moa_max_cost_usd,
            answering=to_answering(body),
        )
        run = EventRun(
            name=body.model if override is None else f"{body.model} (edited)",
            moa=mixture,
            messages=to_messages(body),
            options=options,
            served=served,
        )
        slot = served.slots.take()

        async def answer() -> Response:
            return EventStream(run.events())

        return RunResponse(slot, answer)


def _build(recipe: Recipe, served: Served) -> MoA:
    """An edited recipe, built on the server's registry; what it gets wrong is the client's."""
    try:
        return recipe_lib.build(recipe, served.registry)
    except ConfigError as exc:
        raise bad_request(f"moa_recipe: {exc}", param="moa_recipe") from None


@dataclass
class EventRun:
    name: str
    moa: MoA
    messages: list[Message]
    options: RunOptions
    served: Served

    def events(self) -> AsyncIterator[str]:
        started = time.perf_counter()

        def finish(status: int, result: Result | None, code: str | None) -> None:
            self._finish(status, result, code, time.perf_counter() - started)

        stream = self.moa.events(self.messages, self.options)
        return run_sse(EventShapes(self), [], stream, finish)

    def _finish(self, status: int, result: Result | None, code: str | None, secs: float) -> None:
        metrics = self.served.metrics
        metrics.request(self.name, True, status, secs if status == 200 else None)
        if code is not None:
            metrics.error(code)
        if result is not None:
            metrics.run(self.name, result)
        log.info("%s events status=%d %.3fs", self.name, status, secs)


class EventShapes(Shapes):
    """Every engine event as one JSON object, a layer's `layer.started` before its first
    proposal; a failure as an `error` object with the trace so far."""

    def __init__(self, run: EventRun) -> None:
        self.run = run
        self.labels = run.moa.labels(run.options)
        self.layers_started: set[int] = set()

    def of(self, item: Event) -> Iterator[str]:
        moa, redactor = self.run.moa, self.run.served.redactor
        if isinstance(item, ProposalStarted) and item.layer not in self.layers_started:
            self.layers_started.add(item.layer)
            models = [a.model for a in moa.layers[item.layer - 1].agents]
            # How the cards read: samples of one model numbered, with their settings.
            named = [self.labels[item.layer, i] for i in range(len(models))]
            layer = {"type": "layer.started", "layer": item.layer, "models": models}
            yield sse_event({**layer, "labels": named})
        if isinstance(item, ProposalFinished | ProposalFailed):
            # The engine prices a run's calls at the end; a card wants its cost now.
            moa.prices.price_record(item.record)
        yield sse_event(redactor.data(to_json(item)))

    def ending(self, result: Result) -> Iterator[str]:
        return iter(())  # the `done` object, from the `Done` event, was the last

    def error(self, exc: MoAError) -> ApiError:
        return from_moa_error(exc)

    def failed(self, error: ApiError, result: Any) -> Iterator[str]:
        payload: dict[str, Any] = {"type": "error", **error.body(), "status": error.status}
        if result is not None:
            payload["trace"] = result.to_dict()
        yield sse_event(self.run.served.redactor.data(payload))


def to_json(item: Event) -> dict[str, Any]:
    """One engine event as the JSON object the events API sends."""
    if isinstance(item, ProposalStarted):
        return {"type": "proposal.started", **_where(item.layer, item.index, item.model)}
    if isinstance(item, ProposalDelta):
        return {
            "type": "proposal.delta",
            **_where(item.layer, item.index, item.model),
            "text": item.text,
        }
    if isinstance(item, ProposalFinished | ProposalFailed):
        kind = "proposal.finished" if isinstance(item, ProposalFinished) else "proposal.failed"
        return {"type": kind, **_call(item.record)}
    if isinstance(item, AggregatorStarted):
        return {"type": "aggregator.started", "layer": item.layer, "model": item.model}
    if isinstance(item, Token):
        return {"type": "answer.delta", "text": item.text}
    if isinstance(item, ToolCallDelta):
        return {"type": "answer.tool_calls", "deltas": list(item.deltas)}
    trace = item.result.to_dict()
    done: dict[str, Any] = {"type": "done", "trace": trace, "usage": trace["usage"]}
    # The run's USD cost; None when a call's price is unknown (each call has its own).
    done["cost_usd"] = trace.get("cost_usd")
    # Whether members were lost, as the `moa` extension says it (the trace has who and why).
    done.update(degraded=trace["degraded"], answered=trace["answered"], asked=trace["asked"])
    return done


def _where(layer: int, index: int, model: str) -> dict[str, Any]:
    return {"layer": layer, "index": index, "model": model}


def _call(record: CallRecord) -> dict[str, Any]:
    return {**_where(record.layer, record.index, record.model), "call": record.to_dict()}
