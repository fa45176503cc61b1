"""What `vote` and `medoid` share when they answer with one proposal: each proposal's
`answer_pattern` (its proposer's, else the recipe's on the aggregator) and the reply, the
chosen proposal whole or only its final line (`[aggregator] reply`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from moa.events import Event
from moa.strategies.base import Stage, answer_with, choose, replay
from moa.strategies.final import final_keys, final_line
from moa.trace import CallRecord


def patterns(stage: Stage) -> list[str | None]:
    """The answer_pattern for each of the stage's proposals."""
    default = stage.aggregator.agent.answer_pattern
    out = []
    for proposal in stage.proposals:
        index = proposal.index
        agent = stage.proposers[index] if index < len(stage.proposers) else None
        out.append((agent.answer_pattern if agent else None) or default)
    return out


def keys(stage: Stage, *, note: bool = True) -> list[str]:
    """The proposals' final results as compared; a note names the answers that had none
    (compared whole, as before final results were read)."""
    found, missing = final_keys(stage.references, patterns(stage))
    if missing and note:
        stage.result.notes.append(
            f"{stage.aggregator.strategy.name}: {missing} of {len(found)} answers have no final "
            f"result (no answer_pattern match, no 'Answer:' line, no number): compared whole"
        )
    return found


async def answer_with_pick(stage: Stage, proposal: CallRecord, why: str) -> AsyncIterator[Event]:
    """`proposal` as the answer: whole, or its final line with `reply = "final_line"`."""
    if stage.aggregator.reply != "final_line":
        async for event in answer_with(stage, proposal, why):
            yield event
        return
    pattern = patterns(stage)[stage.proposals.index(proposal)]
    choose(stage, proposal, why, "the final line of ")
    for event in replay(stage, final_line(proposal.output, pattern), proposal.model):
        yield event
