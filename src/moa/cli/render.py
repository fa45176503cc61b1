"""Progress on stderr while the answer streams on stdout."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from moa.events import (
    AggregatorStarted,
    Done,
    Event,
    ProposalFailed,
    ProposalFinished,
    ProposalStarted,
    Token,
)
from moa.pricing import format_cost
from moa.trace import CallRecord, Result


class Progress:
    """Prints one stderr line per finished proposal and the answer's tokens to stdout.

    Once the answer has started, progress lines wait for its end: a staircase aggregator
    streams while its proposers are still finishing, and in a terminal their lines would land
    in the middle of the answer's text."""

    def __init__(
        self,
        out: Console,
        err: Console,
        *,
        show_proposals: bool,
        quiet: bool,
        verbose: bool = False,
    ) -> None:
        self.out, self.err = out, err
        self.show_proposals = show_proposals
        self.quiet = quiet
        self.verbose = verbose  # each call also says what computed it (embedded threads)
        self._answering = False
        self._held: list[str] = []

    def _note(self, line: str) -> None:
        if self._answering:
            self._held.append(line)
        else:
            self.err.print(line, soft_wrap=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, Token):
            self._answering = True
            self.out.print(event.text, end="", markup=False, highlight=False, soft_wrap=True)
            self.out.file.flush()
        elif isinstance(event, ProposalStarted):
            # A layer's calls all start at once, index 0 first: one header per layer.
            if event.index == 0 and not self.quiet:
                self._note(f"[dim]layer {event.layer}: proposing…[/dim]")
        elif isinstance(event, ProposalFinished | ProposalFailed):
            self._proposal(event.record)
        elif isinstance(event, AggregatorStarted) and not self.quiet:
            self._note(f"[dim]aggregating with {escape(event.model)}…[/dim]")
        elif isinstance(event, Done):
            self._done(event.result)

    def _proposal(self, record: CallRecord) -> None:
        if self.quiet:
            return
        where = f"layer {record.layer} · {escape(record.model)} #{record.index + 1}"
        if record.ok:
            tokens = record.usage.output_tokens
            line = f"  [green]✓[/green] {where} · {record.latency_s:.1f}s · {tokens} tok"
            self._note(line + self._runtime(record))
            if self.show_proposals:
                self._note(f"[dim]{escape(record.output.strip())}[/dim]\n")
        else:
            self._note(
                f"  [red]✗[/red] {where} · {record.latency_s:.1f}s · {escape(str(record.error))}"
            )

    def _runtime(self, record: CallRecord) -> str:
        return f" · {escape(record.runtime)}" if self.verbose and record.runtime else ""

    def _done(self, result: Result) -> None:
        self.out.print()
        self._answering = False
        for line in self._held:
            self.err.print(line, soft_wrap=True)
        self._held = []
        # Warnings are not progress: even --quiet shows what changed the answer's footing.
        for warning in result.warnings:
            self.err.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
        degradation = result.degradation
        if degradation.degraded:  # the answer was written without members it asked for
            lost = ", ".join(f"{c.model} ({c.missing})" for c in degradation.lost)
            self.err.print(
                f"[yellow]degraded:[/yellow] {escape(degradation.summary())} · lost {escape(lost)}",
                soft_wrap=True,
            )
        if self.quiet:
            return
        if self.verbose:
            for record in result.calls:
                if record.role == "aggregator":
                    self.err.print(
                        f"[dim]aggregator · {escape(record.model)} · {record.latency_s:.1f}s · "
                        f"{record.usage.output_tokens} tok{self._runtime(record)}[/dim]",
                        soft_wrap=True,
                    )
        # How the answer was reached when not the plain way: a strategy's choices, early stops.
        for note in [*result.notes, *filter(None, [result.stopped_early])]:
            self.err.print(f"[dim]{escape(note)}[/dim]", soft_wrap=True)
        usage = result.usage
        failed = len(result.failures)
        note = f" · {failed} failed" if failed else ""
        about = "~" if usage.estimated else ""  # an upstream sent no usage: moa counted
        self.err.print(
            f"[dim]{len(result.calls)} calls · {about}{usage.input_tokens} in / "
            f"{usage.output_tokens} out tokens · {escape(format_cost(result))} · "
            f"{result.latency_s:.1f}s{note}[/dim]"
        )
