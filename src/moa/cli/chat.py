"""`moa chat`: the reference bot.py, keeping the whole history and surviving errors."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

import typer
from rich.console import Console

from moa.cli.render import Progress
from moa.engine.mixture import MoA
from moa.events import Done
from moa.types import Message, Sampling

HELP = "Type a message. /reset clears the history, /exit (or Ctrl-D) quits; Ctrl-C stops an answer."


def chat_loop(
    mixture: MoA,
    *,
    sampling: Sampling,
    system: str | None,
    progress: Progress,
    console: Console,
    run_guarded: Callable[[Callable[[], Coroutine[Any, Any, str]]], str],
    read: Callable[[str], str] = input,
) -> None:
    history: list[Message] = [Message(role="system", content=system)] if system else []
    console.print(f"[dim]{HELP}[/dim]")
    while True:
        try:
            line = read(">>> ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return
        if text == "/reset":
            del history[len([m for m in history if m["role"] == "system"]) :]
            console.print("[dim]history cleared[/dim]")
            continue
        if text == "/help":
            console.print(f"[dim]{HELP}[/dim]")
            continue
        turn = [*history, Message(role="user", content=line)]

        async def answer(turn: list[Message]) -> str:
            # Progress shows finished proposals only: they need not stream.
            async for event in mixture.stream(turn, sampling=sampling, proposal_deltas=False):
                progress(event)
                if isinstance(event, Done):
                    return event.result.text
            return ""

        try:
            reply = run_guarded(functools.partial(answer, turn))
        except typer.Exit as stop:
            if stop.exit_code == 2:
                raise
            continue  # the error was printed; the history stays as it was before this turn
        history = [*turn, Message(role="assistant", content=reply)]
