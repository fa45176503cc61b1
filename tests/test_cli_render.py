"""The terminal's view of a run: progress on stderr, the answer on stdout, never mixed."""

from __future__ import annotations

import io

from rich.console import Console

from moa.cli.render import Progress
from moa.events import Done, ProposalFinished, ProposalStarted, Token
from moa.trace import CallRecord, Result


def terminal() -> tuple[io.StringIO, Progress]:
    """stdout and stderr on one screen, as in a terminal."""
    screen = io.StringIO()
    out = Console(file=screen, width=200, color_system=None)
    err = Console(file=screen, width=200, color_system=None)
    return screen, Progress(out, err, show_proposals=False, quiet=False)


def test_a_proposal_finishing_mid_answer_is_reported_after_the_answer() -> None:
    # A staircase aggregator streams while its proposers finish.
    screen, progress = terminal()
    early = CallRecord(
        layer=1, index=0, model="fake:p0", role="proposer", output="x", latency_s=1.0
    )
    late = CallRecord(layer=1, index=1, model="fake:p1", role="proposer", output="y", latency_s=2.0)
    progress(ProposalStarted(1, 0, "fake:p0"))
    progress(ProposalFinished(early))
    progress(Token("The sky is "))
    progress(ProposalFinished(late))
    progress(Token("blue."))
    progress(Done(Result(text="The sky is blue.", calls=[early, late])))

    shown = screen.getvalue()
    assert "The sky is blue." in shown
    assert shown.index("fake:p0 #1") < shown.index("The sky is blue.") < shown.index("fake:p1 #2")


def test_without_an_answer_under_way_progress_is_printed_at_once() -> None:
    screen, progress = terminal()
    progress(ProposalStarted(1, 0, "fake:p0"))
    progress(
        ProposalFinished(
            CallRecord(layer=1, index=0, model="fake:p0", role="proposer", latency_s=1.0)
        )
    )
    assert "layer 1: proposing" in screen.getvalue() and "fake:p0 #1" in screen.getvalue()
