"""An example moa plugin: one aggregation strategy and one provider."""

from __future__ import annotations

from collections.abc import AsyncIterator

from moa.events import Event
from moa.providers.base import ModelProfile
from moa.strategies import Stage, Step, Traits, replay
from moa.types import ChatRequest, Completion, StreamChunk, Usage


class Longest(Traits):
    """The longest proposal is the answer, verbatim: no aggregator call."""

    name = "longest"
    # What the engine needs to know of it (moa.strategies.Strategy): its answer is a proposal
    # as written, so tools or a response format asked of the answer are refused up front.
    answers_verbatim = True

    async def worst_case(self, stage: Stage) -> list[Step]:
        return []  # it calls no model, so a budget (max_cost_usd) has nothing to pay for

    async def aggregate(self, stage: Stage) -> AsyncIterator[Event]:
        best = max(stage.proposals, key=lambda p: len(p.output))
        stage.result.notes.append(f"longest: proposal {best.index + 1} ({best.model})")
        for event in replay(stage, best.output, best.model):
            yield event


class EchoProvider:
    """Answers with the last user message; any model name works (`echo:anything`)."""

    name = "echo"

    def profile(self, model: str) -> ModelProfile:
        return ModelProfile()

    async def complete(self, request: ChatRequest) -> Completion:
        text = next(m["content"] for m in reversed(request.messages) if m["role"] == "user")
        return Completion(text, Usage(len(text.split()), len(text.split())), "stop")

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        completion = await self.complete(request)
        yield StreamChunk(completion.text)
        yield StreamChunk(usage=completion.usage, finish_reason=completion.finish_reason)

    async def aclose(self) -> None:
        pass
