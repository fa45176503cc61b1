"""`moa providers`: every provider a model name can start with, where it is called, and whether
its key variable is set (never the key itself)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from moa.cli.guard import fail

if TYPE_CHECKING:
    from moa.providers.registry import Registry

NO_KEY = "—"


def providers(
    recipe: Annotated[
        str | None,
        typer.Option(
            "--recipe", "-r", help="Also list this recipe's [providers.NAME] (name or .toml)."
        ),
    ] = None,
) -> None:
    """List the providers: base URL, key variable, and whether the key is set."""
    from moa import recipes
    from moa.errors import ConfigError
    from moa.providers.registry import Registry

    registry = Registry(env=os.environ)
    if recipe is not None:
        try:
            recipes.register_providers(recipes.load(recipe), registry)
        except ConfigError as exc:
            raise fail(2, str(exc)) from None
    rows = [("provider", "base URL", "key variable", "key")]
    rows += [_row(registry, name) for name in _ordered(registry)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for *cells, key in rows:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  " + key)
    print(
        "\nMOA_<PROVIDER>_BASE_URL moves a provider's endpoint; a recipe's [providers.NAME] "
        "declares a new one or changes a built-in's."
    )


def _ordered(registry: Registry) -> list[str]:
    """The embedded model, the hosted APIs and the local servers as declared, then the rest
    (a recipe's, a plugin's) by name."""
    from moa.providers.registry import BUILTIN_PROVIDERS

    builtins = list(BUILTIN_PROVIDERS.values())
    first = ["local", *(c.name for c in builtins if c.api_key_env)]
    first += [c.name for c in builtins if not c.api_key_env]
    return first + sorted(set(registry.names) - set(first))


def _row(registry: Registry, name: str) -> tuple[str, str, str, str]:
    from moa.providers.registry import base_url_variable

    if name == "local":
        return (name, "embedded llama.cpp, in this process (moa[local])", NO_KEY, "none needed")
    config = registry.config(name)
    if config is None:
        return (name, "installed plugin (entry point moa.providers)", NO_KEY, "its own")
    url = registry.base_url(name) or ""
    if base_url_variable(name) in os.environ:
        url += f" (from {base_url_variable(name)})"
    if config.api_key_env is None:
        return (name, url, NO_KEY, "none needed")
    return (name, url, config.api_key_env, "set" if registry.has_key(name) else "not set")
