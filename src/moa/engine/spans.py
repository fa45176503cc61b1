"""The engine's own spans (moa.telemetry): a proposal layer's and the aggregator's stage's, each
saying once its events have all happened what came of them."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from functools import partial

from moa import telemetry
from moa.engine.aggregator import Aggregator
from moa.events import Event
from moa.trace import CallRecord, Result


def layer_span(
    number: int, size: int, records: list[CallRecord], events: AsyncGenerator[Event, None]
) -> AsyncGenerator[Event, None]:
    """Layer `number`'s events (its `records` filling) under its span."""
    opened = {"moa.layer": number, "moa.layer.size": size}
    return telemetry.stage(f"layer {number}", opened, events, partial(_answered, records))


def aggregate_span(
    aggregator: Aggregator, number: int, result: Result, events: AsyncGenerator[Event, None]
) -> AsyncGenerator[Event, None]:
    """The aggregator's stage (layer `number`) under its span."""
    strategy = aggregator.strategy.name
    opened = {"moa.layer": number, "moa.strategy": strategy}
    return telemetry.stage(f"aggregate {strategy}", opened, events, partial(_decided, result))


def _answered(records: list[CallRecord]) -> dict[str, int]:
    return {"moa.layer.calls": len(records), "moa.layer.answered": sum(r.ok for r in records)}


def _decided(result: Result) -> dict[str, str | bool]:
    """Who answered, and whether the aggregator convened the panel (invocation "auto")."""
    said: dict[str, str | bool] = {}
    if result.aggregator_model is not None:
        said["moa.aggregator_model"] = result.aggregator_model
    if result.panel_convened is not None:
        said["moa.panel_convened"] = result.panel_convened
    return said
