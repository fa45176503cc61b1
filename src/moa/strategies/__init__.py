"""Aggregation strategies, by name; third parties add theirs through the `moa.strategies`
entry point group (a class, or a factory taking no arguments, whose instances have a `name`)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from moa.errors import ConfigError
from moa.strategies.base import Stage, Strategy, stream_answer
from moa.strategies.synthesize import Synthesize

BUILTIN: dict[str, Callable[[], Strategy]] = {"synthesize": Synthesize}


def names() -> list[str]:
    return sorted({*BUILTIN, *(e.name for e in entry_points(group="moa.strategies"))})


def get(name: str) -> Strategy:
    """A strategy by name: a built-in one, else an installed plugin's (which cannot shadow)."""
    if name in BUILTIN:
        return BUILTIN[name]()
    for entry in entry_points(group="moa.strategies", name=name):
        factory: Callable[[], Strategy] = entry.load()
        return factory()
    raise ConfigError(
        f"unknown strategy {name!r} — use one of {', '.join(names())}, "
        f"or install a plugin that provides it"
    )


__all__ = ["BUILTIN", "Stage", "Strategy", "get", "names", "stream_answer"]
