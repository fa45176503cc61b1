"""`vote`: no model call — the most common final result, its first answer streamed verbatim.

Self-consistency: answers are compared on their final results (moa.strategies.final: the
`answer_pattern`, else the last "Answer: …" line, else the last number; an answer with none
is compared whole, and the trace says so), so step-by-step answers that reason differently to
the same result agree; for short answers it is as good as a synthesis at none of its cost.
The winner is the largest group of equal results when at least two proposals share it and no
other group is as large; otherwise (a tie, all different) the proposals are synthesized
instead, and the trace says why. The comparison is `moa.strategies.agreement`'s, which a
layer's `stop_when = "agree"` shares.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from moa.events import Event
from moa.strategies.agreement import Agreement, agreement
from moa.strategies.base import Stage, Step, Traits
from moa.strategies.picked import answer_with_pick, keys
from moa.strategies.synthesize import synthesis_steps, synthesize_instead


class Vote(Traits):
    name = "vote"
    answers_verbatim = True
    answers_agreement = True

    async def worst_case(self, stage: Stage) -> list[Step]:
        """Nothing, unless no answer wins: then a synthesis."""
        if _winner(agreement(keys(stage, note=False))) is not None:
            return []
        return await synthesis_steps(stage, stage.references)

    async def aggregate(self, stage: Stage) -> AsyncIterator[Event]:
        found = agreement(keys(stage))
        where = f"vote: {found.count} of {found.total} answers agree"
        index = _winner(found)
        if index is not None:
            winner = stage.proposals[index]
            async for event in answer_with_pick(stage, winner, f"{where} ({found.answer!r})"):
                yield event
            return
        why = "a tie" if found.count >= 2 else "no two answers agree"
        async for event in synthesize_instead(stage, stage.references, f"vote: {why}"):
            yield event


def _winner(found: Agreement) -> int | None:
    """The winning answer's index: the largest group's first, if two or more agree."""
    return found.winner if found.count >= 2 else None
