"""Errors become exit codes here and nowhere else: 2 for usage or configuration (ConfigError),
1 for a run that failed (RunError), 130 for Ctrl-C."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from moa.errors import ConfigError, MoAError

err = Console(stderr=True, highlight=False)
T = TypeVar("T")


def fail(code: int, message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def run_guarded(
    make: Callable[[], Coroutine[Any, Any, T]], runner: asyncio.Runner | None = None
) -> T:
    """Run a coroutine, turning moa's errors into one stderr line and an exit code. With a
    `runner`, on its event loop (a chat session keeps one loop, and its connections, for all
    of its turns); Ctrl-C cancels the coroutine either way."""
    try:
        return runner.run(make()) if runner is not None else asyncio.run(make())
    except ConfigError as exc:
        raise fail(2, str(exc)) from None
    except MoAError as exc:  # RunError and its kin: the run started and failed
        raise fail(1, str(exc)) from None
    except KeyboardInterrupt:
        err.print("[yellow]cancelled[/yellow]")
        raise typer.Exit(130) from None
