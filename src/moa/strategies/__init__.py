"""Aggregation strategies, by name: how the aggregator turns the proposals into the answer
(`base` holds the protocol, `Stage` and the shared steps; `agreement` the comparison of
answers); third parties add theirs through the `moa.strategies` entry point group (a class,
or a factory taking no arguments, whose instances have a `name`).

Strategies call the aggregator through one call (`moa.call`) and read it through
`AggregatorView`: they may import `moa.call` and everything below it, never the engine.
"""

from __future__ import annotations

from collections.abc import Callable

from moa import plugins
from moa.errors import ConfigError
from moa.strategies.analysis import Analysis
from moa.strategies.base import (
    Stage,
    Step,
    Strategy,
    Traits,
    aggregator_step,
    ask,
    call_once,
    consult,
    declared,
    replay,
    stream_answer,
)
from moa.strategies.medoid import Medoid
from moa.strategies.rank import Rank
from moa.strategies.select import Select
from moa.strategies.synthesize import Synthesize
from moa.strategies.vote import Vote

BUILTIN: dict[str, Callable[[], Strategy]] = {
    "synthesize": Synthesize,
    "analysis": Analysis,
    "select": Select,
    "rank": Rank,
    "vote": Vote,
    "medoid": Medoid,
}


def names() -> list[str]:
    return sorted({*BUILTIN, *plugins.installed(plugins.STRATEGIES)})


def get(name: str) -> Strategy:
    """A strategy by name: a built-in one, else an installed plugin's (which cannot shadow)."""
    if name in BUILTIN:
        return BUILTIN[name]()
    entry = plugins.installed(plugins.STRATEGIES).get(name)
    if entry is not None:
        factory: Callable[[], object] = entry.load()
        return declared(factory())
    raise ConfigError(
        f"unknown strategy {name!r} — use one of {', '.join(names())}, "
        f"or install a plugin that provides it"
    )


__all__ = [
    "BUILTIN",
    "Stage",
    "Step",
    "Strategy",
    "Traits",
    "aggregator_step",
    "ask",
    "call_once",
    "consult",
    "declared",
    "get",
    "names",
    "replay",
    "stream_answer",
]
