"""`synthesize`: the 2024 paper's aggregate-and-synthesize — one streamed answer that reads every
proposal (numbered, in the aggregator's system prompt).

With a `window` (Self-MoA-Seq, arXiv 2502.00674) the proposals are read a window at a time: the
first window's synthesis is carried as a reference into the next, and the last window's
synthesis is the streamed answer. Without one, windows of `AUTO_WINDOW` are used only when the
proposals would not fit the aggregator's context window (rather than cutting them short).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from moa.errors import AggregatorFailedError, ConfigError
from moa.events import Event
from moa.request import Call
from moa.strategies.base import Stage, consult, stream_answer

AUTO_WINDOW = 3


class Synthesize:
    name = "synthesize"

    async def aggregate(self, stage: Stage) -> AsyncIterator[Event]:
        async for event in synthesize(stage, stage.references):
            yield event


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
    if len(references) <= AUTO_WINDOW:
        return None
    call = Call(stage.aggregator.agent, stage.messages, references, prompt, stage.overrides)
    try:
        _, built = await stage.caller.build(call)
    except ConfigError:
        fits = False
    else:
        fits = not built.notes and all(c.kept == c.total for c in built.cuts)
    if fits:
        return None
    stage.result.notes.append(
        f"the {len(references)} proposals do not fit {stage.aggregator.agent.model}'s context "
        f"window together: synthesized {AUTO_WINDOW} at a time (Self-MoA-Seq)"
    )
    return AUTO_WINDOW
