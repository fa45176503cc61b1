"""`select`: Universal Self-Consistency (arXiv 2311.17311) — the aggregator names the proposal
most consistent with the others, and that proposal is the answer, verbatim.

One short call (a number) instead of a long synthesis: the answer streams as soon as the choice
is in. A choice that cannot be read, or an aggregator that fails, falls back to `synthesize`,
and the trace says so.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from moa.events import AggregatorStarted, Event
from moa.strategies.base import Stage, Step, Traits, aggregator_step, answer_with, ask, consult
from moa.strategies.synthesize import synthesis_steps, synthesize_instead
from moa.types import Message, Sampling

SELECT_PROMPT = (
    "You have been provided with a set of responses from various models to the latest user "
    "query. Evaluate them and choose the one that is most consistent with the others: the "
    "answer the majority of the responses agree on.\n\nResponses from models:"
)
SELECT_INSTRUCTION = (
    "Which response is the most consistent with the others? Reply with its number only."
)
# Room for "3", "Response 3" or "The most consistent response is 3." — not for an essay.
SELECT_MAX_TOKENS = 16


def parse_choice(text: str, count: int) -> int | None:
    """The 1-based response number in the selector's reply, if it names one of `count`."""
    for match in re.finditer(r"\d+", text):
        number = int(match.group())
        if 1 <= number <= count:
            return number
    return None


class Select(Traits):
    name = "select"
    answers_verbatim = True

    async def worst_case(self, stage: Stage) -> list[Step]:
        """The choice, then (when no choice can be read) a synthesis after all."""
        references = stage.references
        selector = []
        if len(references) >= 2:
            messages, overrides = _asked(stage)
            selector = [
                aggregator_step(
                    stage, references, SELECT_PROMPT, messages=messages, overrides=overrides
                )
            ]
        return [*selector, *await synthesis_steps(stage, references)]

    async def aggregate(self, stage: Stage) -> AsyncIterator[Event]:
        references = stage.references
        if len(references) < 2:
            async for event in synthesize_instead(
                stage, references, "select: fewer than two proposals"
            ):
                yield event
            return
        yield AggregatorStarted(stage.number, stage.aggregator.agent.model)
        messages, overrides = _asked(stage)
        record, _ = await consult(
            stage, "selector", references, SELECT_PROMPT, messages=messages, overrides=overrides
        )
        choice = parse_choice(record.output, len(references)) if record else None
        if record is not None:
            record.data = {"choice": choice}
        if record is None or choice is None:
            why = "the selector failed" if record is None else "no response number in its reply"
            async for event in synthesize_instead(stage, references, f"select: {why}"):
                yield event
            return
        chosen = stage.proposals[choice - 1]
        async for event in answer_with(stage, chosen, f"select: {record.model} chose {choice}"):
            yield event


def _asked(stage: Stage) -> tuple[list[Message], Sampling]:
    """What the selector is sent: the question turned into a choice, and room for a number."""
    overrides = Sampling(max_tokens=SELECT_MAX_TOKENS).merged_over(stage.side_overrides)
    return ask(stage.messages, SELECT_INSTRUCTION), overrides
