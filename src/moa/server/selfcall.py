"""A recipe must not use the server that serves it as a provider: each request would start
runs that call the server again, without end."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from moa.errors import ConfigError
from moa.providers.registry import BUILTIN_PROVIDERS, base_url_variable, split_model_ref
from moa.recipes.schema import Recipe

_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}
_ANY = {"", "0.0.0.0", "::"}


def refuse_self_calls(
    recipes: Iterable[Recipe], host: str, port: int, env: Mapping[str, str]
) -> None:
    """ConfigError if a recipe's provider points at `host:port` (this server)."""
    for recipe in recipes:
        for provider, url in _endpoints(recipe, env).items():
            if _is_self(url, host, port):
                raise ConfigError(
                    f"recipe {recipe.name!r}: provider {provider!r} ({url}) is this server "
                    f"({host}:{port}) — a MoA calling itself would never finish; point the "
                    f"provider at another server or serve on another port"
                )


def _endpoints(recipe: Recipe, env: Mapping[str, str]) -> dict[str, str]:
    names = {split_model_ref(m)[0] for m in _models(recipe)} | set(recipe.providers)
    urls: dict[str, str] = {}
    for name in names:
        builtin = BUILTIN_PROVIDERS.get(name)
        declared = recipe.providers.get(name)
        url = declared.base_url if declared is not None else None
        url = url or (builtin.base_url if builtin is not None else None)
        url = env.get(base_url_variable(name), url)
        if url:
            urls[name] = url
    return urls


def _models(recipe: Recipe) -> list[str]:
    specs = [m for layer in recipe.layers for m in layer.models]
    models = [m if isinstance(m, str) else m.model for m in specs]
    models.append(recipe.aggregator.model)
    models += [m if isinstance(m, str) else m.model for m in recipe.aggregator.fallbacks]
    return models


def _is_self(url: str, host: str, port: int) -> bool:
    parts = urlsplit(url)
    try:
        url_port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    if url_port != port:
        return False
    target = (parts.hostname or "").lower()
    mine = {host.lower()}
    if host in _ANY or host.lower() in _LOOPBACK:
        mine |= _LOOPBACK | {socket.gethostname().lower()}
    return target in mine
