"""Starting the server: `moa serve`, or `uvicorn --factory moa.server:app_from_env` for
process managers that run the workers themselves (gunicorn, several uvicorn workers)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from moa import recipes as recipe_lib
from moa.errors import ConfigError
from moa.providers.registry import Registry
from moa.recipes.schema import Recipe
from moa.server.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENT_RUNS, create_app
from moa.server.security import parse_keys
from moa.server.selfcall import refuse_self_calls

# The environment `app_from_env` reads; `moa serve --workers N` passes its options this way.
ENV_RECIPES = "MOA_SERVE_RECIPES"
ENV_API_KEYS = "MOA_API_KEYS"
ENV_MAX_RUNS = "MOA_MAX_CONCURRENT_RUNS"
ENV_MAX_BODY = "MOA_MAX_BODY_BYTES"
ENV_CORS = "MOA_CORS_ORIGINS"
ENV_NO_UI = "MOA_NO_UI"
ENV_REDIS = "MOA_REDIS_URL"
ENV_REDIS_OPTIONAL = "MOA_REDIS_OPTIONAL"
ENV_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def load_recipes(refs: Iterable[str]) -> dict[str, Recipe]:
    """Recipes by the model name clients will use: the recipe's `name`."""
    loaded: dict[str, Recipe] = {}
    for ref in refs:
        recipe = recipe_lib.load(ref)
        if recipe.name in loaded:
            raise ConfigError(
                f"two recipes are named {recipe.name!r}; give each served recipe its own `name`"
            )
        loaded[recipe.name] = recipe
    return loaded


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if number < 1:
        raise ConfigError(f"{name} must be at least 1, got {number}")
    return number


def registry_factory(redis_url: str | None, optional: bool = False) -> Callable[[], Registry]:
    """Registries whose rate limits live on Redis at `redis_url` (None: per process)."""
    if not redis_url:
        return Registry

    def make() -> Registry:
        from moa.policies.redis import share_limits

        registry = Registry()
        share_limits(registry.limits, redis_url, optional=optional)
        return registry

    return make


def app_from_env(env: Mapping[str, str] | None = None) -> FastAPI:
    """The app as configured by MOA_SERVE_RECIPES (comma-separated; default `local`),
    MOA_API_KEYS, MOA_MAX_CONCURRENT_RUNS, MOA_MAX_BODY_BYTES, MOA_CORS_ORIGINS, MOA_NO_UI,
    MOA_REDIS_URL and MOA_REDIS_OPTIONAL; traced as OTEL_* (or MOA_OTEL) say."""
    env = os.environ if env is None else env
    if any(k.startswith(("OTEL_", "MOA_OTEL")) for k in env):  # a worker traces like its parent
        from moa.telemetry.setup import start

        start(env=env)
    refs = [r.strip() for r in env.get(ENV_RECIPES, "local").split(",") if r.strip()]
    optional = env.get(ENV_REDIS_OPTIONAL, "").strip().lower() in {"1", "true", "yes", "on"}
    return create_app(
        load_recipes(refs or ["local"]),
        registry_factory=registry_factory(env.get(ENV_REDIS), optional),
        api_keys=parse_keys(env.get(ENV_API_KEYS)),
        max_concurrent_runs=_int_env(env, ENV_MAX_RUNS, DEFAULT_MAX_CONCURRENT_RUNS),
        max_body_bytes=_int_env(env, ENV_MAX_BODY, DEFAULT_MAX_BODY_BYTES),
        env=env,
        cors_origins=parse_keys(env.get(ENV_CORS)),
        ui=env.get(ENV_NO_UI, "").strip().lower() not in ("1", "true", "yes", "on"),
    )


def log_to_stderr(level: str) -> None:
    """One line per request on stderr, next to uvicorn's own lines (which do not propagate)."""
    logger = logging.getLogger("moa.server")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())


def serve(
    recipe_refs: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_keys: Sequence[str] = (),
    max_concurrent_runs: int = DEFAULT_MAX_CONCURRENT_RUNS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    workers: int = 1,
    graceful_timeout_s: int = 30,
    log_level: str = "info",
    cors_origins: Sequence[str] = (),
    ui: bool = True,
    redis_url: str | None = None,
    redis_optional: bool = False,
) -> None:
    """Run the server until SIGINT/SIGTERM; in-flight runs get `graceful_timeout_s` to finish."""
    log_to_stderr(log_level)
    if max_concurrent_runs < 1 or max_body_bytes < 1 or workers < 1:
        raise ConfigError("--max-concurrent-runs, --max-body-bytes and --workers must be >= 1")
    # Built here even with several workers, so configuration errors stop `moa serve` at once.
    loaded = load_recipes(recipe_refs)
    refuse_self_calls(loaded.values(), host, port, os.environ)
    app = create_app(
        loaded,
        api_keys=api_keys,
        max_concurrent_runs=max_concurrent_runs,
        max_body_bytes=max_body_bytes,
        cors_origins=cors_origins,
        ui=ui,
        registry_factory=registry_factory(redis_url, redis_optional),
    )
    if workers == 1:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=graceful_timeout_s,
        )
        return
    # Workers are separate processes: each rebuilds the app from the environment.
    os.environ[ENV_RECIPES] = ",".join(recipe_refs)
    os.environ[ENV_API_KEYS] = ",".join(api_keys)
    os.environ[ENV_MAX_RUNS] = str(max_concurrent_runs)
    os.environ[ENV_MAX_BODY] = str(max_body_bytes)
    os.environ[ENV_CORS] = ",".join(cors_origins)
    os.environ[ENV_NO_UI] = "" if ui else "1"
    os.environ[ENV_REDIS] = redis_url or ""
    os.environ[ENV_REDIS_OPTIONAL] = "1" if redis_optional else ""
    with _metrics_dir():
        uvicorn.run(
            "moa.server:app_from_env",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=graceful_timeout_s,
        )


@contextmanager
def _metrics_dir() -> Iterator[None]:
    """PROMETHEUS_MULTIPROC_DIR for the workers: theirs if set (emptied of a previous run's
    files, as prometheus-client requires), else a fresh one removed afterwards."""
    given = os.environ.get(ENV_METRICS_DIR)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    folder = tempfile.mkdtemp(prefix="moa-metrics-")
    os.environ[ENV_METRICS_DIR] = folder
    try:
        yield
    finally:
        os.environ.pop(ENV_METRICS_DIR, None)
        shutil.rmtree(folder, ignore_errors=True)
