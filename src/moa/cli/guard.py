"""Errors become exit codes here and nowhere else, as moa.failures' table says: 2 for usage or
configuration (ConfigError), 1 for a run that failed (RunError), 3 for a degraded run refused by
`on_degraded = "fail"` (DegradedRunError), 130 for Ctrl-C."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from moa.errors import MoAError

if TYPE_CHECKING:
    import asyncio

    from rich.console import Console

T = TypeVar("T")


@cache
def _err() -> Console:
    # rich loads on the first message, not with the command line (start-up time).
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def fail(code: int, message: str) -> typer.Exit:
    from rich.markup import escape

    _err().print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def warn(message: str) -> None:
    from rich.markup import escape

    _err().print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)


def cli_hint(exc: MoAError) -> str:
    """What the command line adds to an engine error: its own flags for the recipe keys the
    message names (the message itself is the same on every face, the server's included)."""
    from moa.failures import TIMEOUT_HINT, classify

    failures = getattr(exc, "failures", [])
    hints = [TIMEOUT_HINT] if any(f.error_kind == "timeout" for f in failures) else []
    hint = classify(exc).hint
    if hint is not None and hint not in hints:
        hints.append(hint)
    return f" ({'; '.join(hints)})" if hints else ""


def run_guarded(
    make: Callable[[], Coroutine[Any, Any, T]], runner: asyncio.Runner | None = None
) -> T:
    """Run a coroutine, turning moa's errors into one stderr line and an exit code. With a
    `runner`, on its event loop (a chat session keeps one loop, and its connections, for all
    of its turns); Ctrl-C cancels the coroutine either way."""
    import asyncio

    try:
        return runner.run(make()) if runner is not None else asyncio.run(make())
    except MoAError as exc:
        from moa.failures import classify

        raise fail(classify(exc).exit, str(exc) + cli_hint(exc)) from None
    except KeyboardInterrupt:
        _err().print("[yellow]cancelled[/yellow]")
        raise typer.Exit(130) from None
