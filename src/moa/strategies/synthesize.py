"""`synthesize`: the 2024 paper's aggregate-and-synthesize — one streamed answer that reads every
proposal (numbered, in the aggregator's system prompt).

With a `window` (Self-MoA-Seq, arXiv 2502.00674) the proposals are read a window at a time: the
first window's synthesis is carried as a reference into the next, and the last window's
synthesis is the streamed answer. Without one, windows of `AUTO_WINDOW` are used only when the
proposals would not fit the aggregator's context window (rather than cutting them short).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from moa.call.request import Call
from moa.errors import AggregatorFailedError, ConfigError
from moa.events import Event
from moa.strategies.base import (
    Stage,
    Step,
    Traits,
    aggregator_step,
    answer_step,
    consult,
    stream_answer,
)

AUTO_WINDOW = 3


class Synthesize(Traits):
    name = "synthesize"
    staircase = True

    async def aggregate(self, stage: Stage) -> AsyncIterator[Event]:
        async for event in synthesize(stage, stage.references):
            yield event

    async def worst_case(self, stage: Stage) -> list[Step]:
        return await synthesis_steps(stage, stage.references)


async def synthesize(
    stage: Stage, references: Sequence[str], prompt: str | None = None
) -> AsyncIterator[Event]:
    """Stream the synthesis of `references`, window by window when they need it."""
    prompt = stage.aggregator.prompt if prompt is None else prompt
    size = stage.aggregator.window or await _needed_window(stage, references, prompt)
    refs = list(references)
    if size is not None and len(refs) > size:
        windows = [refs[i : i + size] for i in range(0, len(refs), size)]
        carried = await _synthesize_windows(stage, windows[:-1], prompt)
        refs = [carried, *windows[-1]]
    async for event in stream_answer(stage, refs, prompt):
        yield event


async def synthesize_instead(
    stage: Stage, references: Sequence[str], why: str
) -> AsyncIterator[Event]:
    """The way out of a strategy that cannot do its own work (too few proposals, a failed
    side call, an unreadable reply): the trace says why, and the proposals are synthesized."""
    stage.result.notes.append(f"{why} — synthesized instead")
    async for event in synthesize(stage, references):
        yield event


async def synthesis_steps(
    stage: Stage, references: Sequence[str], prompt: str | None = None, reads: tuple[Step, ...] = ()
) -> list[Step]:
    """The calls `synthesize` makes, each of whose prompts also holds the answers of `reads`:
    one per window before the last (each reading the synthesis carried so far), then the
    answer."""
    prompt = stage.aggregator.prompt if prompt is None else prompt
    size = stage.aggregator.window
    if size is None and not await _fits(stage, references, prompt):
        size = AUTO_WINDOW
    refs, steps = list(references), list[Step]()
    if size is not None and len(refs) > size:
        windows = [refs[i : i + size] for i in range(0, len(refs), size)]
        for window in windows[:-1]:
            carried = steps[-1:]  # the synthesis so far, if any, is one more reference
            steps.append(
                aggregator_step(
                    stage, window, prompt, overrides=stage.overrides, reads=(*reads, *carried)
                )
            )
        refs, reads = windows[-1], (*reads, steps[-1])
    return [*steps, answer_step(stage, refs, prompt, reads)]


async def _synthesize_windows(stage: Stage, windows: list[list[str]], prompt: str) -> str:
    """The running synthesis over `windows` (all but the last, which the caller streams)."""
    carried: str | None = None
    for window in windows:
        seen = window if carried is None else [carried, *window]
        record, tried = await consult(stage, "synthesizer", seen, prompt, overrides=stage.overrides)
        if record is None:
            raise AggregatorFailedError(tried, stage.result)
        carried = record.output
    assert carried is not None, "called with at least one window"
    return carried


async def _needed_window(stage: Stage, references: Sequence[str], prompt: str) -> int | None:
    """`AUTO_WINDOW` when the references would have to be cut (or would not fit at all) in
    the aggregator's context window; None when they fit."""
    if await _fits(stage, references, prompt):
        return None
    stage.result.notes.append(
        f"the {len(references)} proposals do not fit {stage.aggregator.agent.model}'s context "
        f"window together: synthesized {AUTO_WINDOW} at a time (Self-MoA-Seq)"
    )
    return AUTO_WINDOW


async def _fits(stage: Stage, references: Sequence[str], prompt: str) -> bool:
    """Whether the references fit the aggregator's window whole (a few always do)."""
    if len(references) <= AUTO_WINDOW:
        return True
    call = Call(stage.aggregator.agent, stage.messages, references, prompt, stage.overrides)
    try:
        _, built = await stage.caller.build(call)
    except ConfigError:
        return False
    return not built.notes and all(c.kept == c.total for c in built.cuts)
