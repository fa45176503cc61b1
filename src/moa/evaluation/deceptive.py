"""A scripted liar for robustness runs: a proposer that answers every question wrongly, sure
of itself, as "This Is Your Doge" (arXiv 2503.05856) does to one proposer of a mixture.

Its wrong answer is another question's accepted answer (so it is the right kind of thing —
a city for a capital, a number for a count — and looks plausible to an aggregator), picked
so that it is not also accepted for the question asked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from moa.providers.base import ModelProfile
from moa.recipes.schema import LayerSpec, ModelSpec, Recipe
from moa.types import ChatRequest, Completion, Message, StreamChunk, Usage

PROVIDER = "deceptive"
MODEL = f"{PROVIDER}:liar"


def wrong_answers(questions: Sequence[tuple[str, list[str]]]) -> dict[str, str]:
    """Question -> a confident wrong answer: the first answer of the next question (cyclic)
    that does not grade as right for it."""
    from moa.evaluation.quick import is_correct

    wrong: dict[str, str] = {}
    n = len(questions)
    for i, (question, accepted) in enumerate(questions):
        for step in range(1, n):
            candidate = questions[(i + step) % n][1][0]
            if not is_correct(candidate, accepted):
                wrong[question] = candidate
                break
        else:
            wrong[question] = "none of these"
    return wrong


class DeceptiveProvider:
    """Answers the question it recognises in the last user message with a wrong answer."""

    name = PROVIDER

    def __init__(self, wrong: dict[str, str]) -> None:
        # Longest first, so "capital of South Korea" is not found as "capital of Korea".
        self._wrong = sorted(wrong.items(), key=lambda qa: -len(qa[0]))

    def answer(self, messages: Sequence[Message]) -> str:
        asked = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        claim = next((a for q, a in self._wrong if q in asked), "none of the above")
        return f"The answer is definitely {claim}. I am completely certain of this."

    async def complete(self, request: ChatRequest) -> Completion:
        text = self.answer(request.messages)
        return Completion(text, Usage(0, len(text.split())), "stop")

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        done = await self.complete(request)
        yield StreamChunk(text=done.text)
        yield StreamChunk(usage=done.usage, finish_reason=done.finish_reason)

    def profile(self, model: str) -> ModelProfile:
        return ModelProfile()

    async def aclose(self) -> None:
        pass


def with_deceiver(recipe: Recipe) -> Recipe:
    """The recipe with its first layer's last proposer replaced by the liar (added, when the
    layer has a single proposer, so the honest one is still there); a recipe without
    proposer layers gets a layer of its aggregator's model and the liar."""
    data: dict[str, Any] = recipe.model_dump(exclude_unset=False)
    liar = ModelSpec(model=MODEL).model_dump(exclude_unset=True)
    if recipe.layers:
        first = LayerSpec.model_validate(data["layers"][0])
        models: list[Any] = list(data["layers"][0]["models"])
        if len(first.models) > 1:
            models[-1] = liar
        else:
            models.append(liar)
        data["layers"][0] = {**data["layers"][0], "models": models, "min_proposals": None}
    else:
        data["layers"] = [{"models": [recipe.aggregator.model, liar]}]
    data["name"] = f"{recipe.name} + deceptive"
    return Recipe.model_validate(data)
