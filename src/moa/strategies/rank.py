"""`rank`: peer ranking, then a chairman (Karpathy's llm-council; SMoA's top-k judge).

Each proposer of the last layer ranks the other proposers' answers, anonymously (numbered,
its own left out), ending its reply with a line like `FINAL RANKING: 2, 1, 3`. The answers'
mean ranks decide the `top_k` that the aggregator synthesizes. A ranker that fails or writes
no readable ranking is left out; with no ranking at all, every proposal is synthesized.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence

from moa.call.request import Call
from moa.events import Event
from moa.strategies.base import Stage, Step, Traits, ask, call_once
from moa.strategies.synthesize import synthesis_steps, synthesize
from moa.trace import CallRecord

RANK_PROMPT = (
    "You have been provided with a set of anonymous responses to the latest user query. "
    "Evaluate each one for accuracy and helpfulness, then rank them from best to worst."
    "\n\nResponses:"
)
RANK_INSTRUCTION = (
    "Do not answer the query yourself. Briefly evaluate each response, then end your reply "
    "with one line of the form `FINAL RANKING: 2, 1, 3` listing every response number, best "
    "first."
)
_FINAL = re.compile(r"FINAL RANKING\s*:?(.*)", re.IGNORECASE | re.DOTALL)


def parse_ranking(text: str, count: int) -> list[int] | None:
    """The response numbers (1-based) after the last `FINAL RANKING:`, best first, each once;
    None when there is no such line or it names none of the `count` responses."""
    matches = list(_FINAL.finditer(text))
    if not matches:
        return None
    tail = matches[-1].group(1)
    # A numbered list ("1. Response 3") names the responses after the word; else every number.
    named = re.findall(r"response\s*#?\s*(\d+)", tail, re.IGNORECASE)
    ranking: list[int] = []
    for number in map(int, named or re.findall(r"\d+", tail)):
        if 1 <= number <= count and number not in ranking:
            ranking.append(number)
    return ranking or None


def mean_ranks(rankings: Mapping[int, Sequence[int]], count: int) -> list[float]:
    """Each proposal's mean place over the rankings (by ranker's own proposal index, of 0-based
    proposal indexes); a proposal that a ranking leaves out (other than the ranker's own) is
    placed after those it named. A proposal no ranking could place ranks last."""
    places: list[list[int]] = [[] for _ in range(count)]
    for own, ranking in rankings.items():
        for place, index in enumerate(ranking, 1):
            places[index].append(place)
        for index in range(count):
            if index != own and index not in ranking:
                places[index].append(len(ranking) + 1)
    return [sum(p) / len(p) if p else float("inf") for p in places]


class Rank(Traits):
    name = "rank"
    uses_top_k = True

    async def worst_case(self, stage: Stage) -> list[Step]:
        """Every proposer's ranking, then (with no readable ranking) a synthesis of every
        proposal, not just the top_k."""
        references = stage.references
        rankings = []
        if len(references) > stage.aggregator.top_k:
            rankings = [Step((self._call(stage, own),)) for own in range(len(references))]
        return [*rankings, *await synthesis_steps(stage, references)]

    async def aggregate(self, stage: Stage) -> AsyncIterator[Event]:
        top_k = stage.aggregator.top_k
        references = stage.references
        if len(references) <= top_k:
            stage.result.notes.append(
                f"rank: {len(references)} proposals, top_k {top_k} — nothing to rank"
            )
            async for event in synthesize(stage, references):
                yield event
            return
        rankings = await self._rankings(stage)
        if not rankings:
            stage.result.notes.append("rank: no readable ranking — synthesized every proposal")
            async for event in synthesize(stage, references):
                yield event
            return
        means = mean_ranks(rankings, len(references))
        top = sorted(range(len(references)), key=lambda i: (means[i], i))[:top_k]
        stage.result.notes.append(
            "rank: mean ranks "
            + ", ".join(f"{i + 1}: {means[i]:.2f}" for i in range(len(means)))
            + f" — synthesized proposals {', '.join(str(i + 1) for i in sorted(top))}"
        )
        async for event in synthesize(stage, [references[i] for i in sorted(top)]):
            yield event

    async def _rankings(self, stage: Stage) -> dict[int, list[int]]:
        """Each ranker's ranking, by its proposal index, as 0-based proposal indexes."""
        proposals = stage.proposals
        records = [
            CallRecord(layer=stage.number, index=p.index, model=p.model, role="ranker")
            for p in proposals
        ]
        calls = [self._call(stage, own) for own in range(len(proposals))]
        await asyncio.gather(
            *(
                call_once(stage, stage.proposers[p.index], r, c)
                for p, r, c in zip(proposals, records, calls, strict=True)
            )
        )
        rankings: dict[int, list[int]] = {}
        for own, record in enumerate(records):
            others = [i for i in range(len(proposals)) if i != own]
            parsed = parse_ranking(record.output, len(others)) if record.ok else None
            if parsed is not None:
                rankings[own] = [others[n - 1] for n in parsed]
            # As proposal numbers of the whole layer (the ranker saw them renumbered).
            record.data = {"ranking": [i + 1 for i in rankings[own]] if own in rankings else None}
        return rankings

    @staticmethod
    def _call(stage: Stage, own: int) -> Call:
        others = [p.output for i, p in enumerate(stage.proposals) if i != own]
        agent = stage.proposers[stage.proposals[own].index]
        return Call(agent, ask(stage.messages, RANK_INSTRUCTION), others, RANK_PROMPT)
