"""Adaptive self-consistency (Aggarwal et al. 2023, "Let's Sample Step by Step"): an adaptive
layer's calls are drawn in rounds, and the layer stops drawing once more samples could not
change its majority final result, or that result already holds the share the recipe asks.

Each round's calls run concurrently, so on the embedded model they are one llama.cpp batch
(moa.providers.local.batch): a round of three costs little more than one call. Easy questions
stop after the first round; hard ones draw every call. The trace's notes say how many were
drawn and why the layer stopped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass

from moa.call.agent import Agent
from moa.call.caller import Caller
from moa.engine.layer import ProposalLayer, Rounds, run_layer
from moa.events import Event
from moa.strategies.final import final_keys
from moa.trace import CallRecord, Result
from moa.types import Message, Sampling


@dataclass(frozen=True, slots=True)
class Verdict:
    stop: bool
    why: str


def verdict(keys: Sequence[str], left: int, rounds: Rounds) -> Verdict:
    """Whether to stop after answers with final results `keys`, with `left` calls undrawn."""
    counts = Counter(k for k in keys if k).most_common()
    if not counts:
        return Verdict(left == 0, "no answer yet")
    leader, votes = counts[0]
    runner_up = counts[1][1] if len(counts) > 1 else 0
    share = votes / len(keys)
    shown = leader if len(leader) <= 40 else leader[:37] + "..."
    said = f"{votes} of {len(keys)} answers say {shown!r}"
    if votes >= 2 and votes > runner_up + left:
        return Verdict(True, f"{said}; the {left} calls left cannot overtake it")
    if votes >= 2 and votes > runner_up and share >= rounds.stop_share:
        return Verdict(True, f"{said}, {share:.0%} >= stop_share {rounds.stop_share:.0%}")
    return Verdict(left == 0, f"{said}; no call left" if left == 0 else said)


async def run_rounds(
    result: Result,
    pattern_of: Callable[[Agent], str | None],
    caller: Caller,
    number: int,
    layer: ProposalLayer,
    messages: list[Message],
    references: list[str],
    overrides: Sampling,
    records: list[CallRecord],
    deltas: bool = True,
) -> AsyncGenerator[Event, None]:
    """An adaptive layer's events, round after round, until `verdict` stops it; the trace gets
    one note saying how many calls were drawn, in how many rounds, and why it stopped."""
    rounds = layer.rounds
    assert rounds is not None  # only adaptive layers come here
    total, drawn, size, count = len(layer.agents), 0, rounds.first, 0
    while True:
        draw = range(drawn, min(total, drawn + size))
        async for event in run_layer(
            caller, number, layer, messages, references, overrides, records, deltas, draw
        ):
            yield event
        drawn, size, count = draw.stop, rounds.size, count + 1
        answered = [r for r in records if r.ok]
        keys, _ = final_keys(
            [r.output for r in answered], [pattern_of(layer.agents[r.index]) for r in answered]
        )
        found = verdict(keys, total - drawn, rounds)
        if found.stop:
            break
    plural = "round" if count == 1 else "rounds"
    result.notes.append(
        f"layer {number}: adaptive sampling drew {drawn} of {total} calls in {count} {plural} "
        f"— {found.why}"
    )
