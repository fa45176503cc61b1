"""Third-party extensions, found through entry points (as `llm` finds its plugins): a package
declares `[project.entry-points."moa.strategies"]` or `."moa.providers"` and moa uses it
without being edited. Read once per process: scanning the installed packages costs ~40 ms,
so it happens only when a name is not a built-in one."""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

STRATEGIES = "moa.strategies"  # name = a Strategy class, or a factory taking no arguments
PROVIDERS = "moa.providers"  # name = a Provider class, or a factory taking no arguments


@cache
def installed(group: str) -> dict[str, EntryPoint]:
    return {e.name: e for e in entry_points(group=group)}
