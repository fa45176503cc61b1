"""A run's events as MCP progress notifications: one step per proposal that answered or
failed, one when the aggregator starts, the last when the answer is done."""

from __future__ import annotations

from dataclasses import dataclass

from moa.engine.mixture import MoA
from moa.events import AggregatorStarted, Done, Event, ProposalFailed, ProposalFinished


@dataclass(frozen=True, slots=True)
class Step:
    """What one notification says: `progress` of `total` (None once the run has taken more
    steps than planned, as a fallback aggregator does), and a line for the user."""

    progress: float
    total: float | None
    message: str


class LayerProgress:
    """Counts a run's steps against those its recipe plans, so a client can draw a bar.

    MCP asks that progress increase with every notification; a count of steps does, whatever
    order the events come in."""

    def __init__(self, mixture: MoA) -> None:
        self._layers = len(mixture.layers)
        self._widths = [len(layer.agents) for layer in mixture.layers]
        # Each proposal, the aggregator's start, and the answer.
        self._total = sum(self._widths) + 2
        self._steps = 0
        self._answered: dict[int, int] = {}

    def step(self, event: Event) -> Step | None:
        message = self._describe(event)
        if message is None:
            return None
        self._steps += 1
        if isinstance(event, Done):
            return Step(self._steps, self._steps, message)
        total = self._total if self._steps < self._total else None
        return Step(self._steps, total, message)

    def _describe(self, event: Event) -> str | None:
        if isinstance(event, ProposalFinished | ProposalFailed):
            record = event.record
            layer = record.layer
            self._answered[layer] = self._answered.get(layer, 0) + 1
            width = self._widths[layer - 1] if layer <= self._layers else 0
            where = f"layer {layer}/{self._layers}: {record.model}"
            count = f"({self._answered[layer]} of {width})"
            if isinstance(event, ProposalFinished):
                return f"{where} answered {count}"
            what = "was cut" if record.status == "cancelled" else "failed"
            return f"{where} {what}: {record.error_kind or record.status} {count}"
        if isinstance(event, AggregatorStarted):
            return f"aggregating with {event.model}"
        if isinstance(event, Done):
            return "answered"
        return None
