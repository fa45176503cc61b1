"""`synthesize`: the 2024 paper's aggregate-and-synthesize — one streamed answer that reads every
proposal (numbered, in the aggregator's system prompt)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from moa.events import Event
from moa.strategies.base import Stage, stream_answer


class Synthesize:
    name = "synthesize"

    async def aggregate(self, stage: Stage) -> AsyncIterator[Event]:
        async for event in stream_answer(stage, stage.references, stage.aggregator.prompt):
            yield event
