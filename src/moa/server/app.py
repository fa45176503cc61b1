"""The FastAPI app: any loaded recipe answers as a model on OpenAI's chat completions API.

The app is stateless between requests (each run is independent; only counters are kept), so
any number of processes can serve the same recipes behind a load balancer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from moa import recipes as recipe_lib
from moa.engine.mixture import MoA
from moa.engine.mixture import alone as solo
from moa.errors import MoAError
from moa.providers.registry import Registry
from moa.recipes.schema import Recipe
from moa.server.capabilities import lacking_capabilities
from moa.server.chat import add_chat_route
from moa.server.errors import ApiError, from_moa_error
from moa.server.events_api import add_events_api
from moa.server.limits import BodyLimit, RunSlots
from moa.server.messages.errors import render
from moa.server.messages.route import add_messages_route
from moa.server.metrics import Metrics
from moa.server.models_api import add_model_routes, add_ops_routes, model_not_found
from moa.server.openapi import install as install_openapi
from moa.server.responses.route import add_responses_route
from moa.server.runs import Served
from moa.server.schemas import validation_error
from moa.server.security import AuthGate, BearerAuth, Redactor
from moa.server.tracecontext import TraceContext
from moa.server.ui import UI_PATHS, add_ui

log = logging.getLogger("moa.server")

DEFAULT_MAX_CONCURRENT_RUNS = 16
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024


def create_app(
    recipes: Mapping[str, Recipe],
    *,
    api_keys: Sequence[str] = (),
    max_concurrent_runs: int = DEFAULT_MAX_CONCURRENT_RUNS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    registry_factory: Callable[[], Registry] = Registry,
    env: Mapping[str, str] | None = None,
    cors_origins: Sequence[str] = (),
    ui: bool = True,
) -> FastAPI:
    """Serve `recipes` under their keys as model names.

    Every recipe is built now, so a missing key or extra fails at startup, not on a request.
    `cors_origins` lets browser apps on those origins call the API (`*` for any). `ui` serves
    the web playground at `/` (its page is open; everything it calls needs a key).
    """
    registry = registry_factory()
    mixtures = _build_all(recipes, registry)
    metrics = Metrics()
    slots = RunSlots(max_concurrent_runs, on_change=metrics.runs_in_progress.set)
    redactor = Redactor.for_recipes(recipes.values(), env)
    alone = {name: solo(mixture) for name, mixture in mixtures.items()}
    served = Served(recipes, mixtures, registry, slots, metrics, redactor, alone)
    app = _new_app(served, cors_origins)
    _install_gates(app, served, BearerAuth(api_keys), max_body_bytes, ui)
    _install_error_handlers(app, metrics, redactor)
    _add_routes(app, served, ui)
    return app


def _new_app(served: Served, cors_origins: Sequence[str]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for mixture in served.mixtures.values():
            await mixture.aclose()
        served.metrics.close()

    app = FastAPI(
        title="moa",
        summary="Mixture-of-Agents recipes served as OpenAI-compatible chat models.",
        lifespan=lifespan,
    )
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["Retry-After"],
        )
    app.state.metrics = served.metrics
    app.state.slots = served.slots
    return app


def _install_gates(
    app: FastAPI, served: Served, auth: BearerAuth, max_body_bytes: int, ui: bool
) -> None:
    """The OpenAPI schema, then the body limit and the key check in front of every route."""
    metrics = served.metrics
    # The schema and its docs page are open like /healthz: they hold nothing secret.
    open_paths = ["/healthz", *_docs_paths(app), *(UI_PATHS if ui else ())]
    install_openapi(
        app,
        list(served.mixtures),
        auth=auth.enabled,
        open_paths=open_paths,
        lacking=lacking_capabilities(served.recipes, served.mixtures),
    )
    # Outermost last: auth runs before the body is buffered and measured.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, on_refuse=metrics.error, render=render)
    app.add_middleware(
        AuthGate, auth=auth, open_paths=open_paths, on_refuse=metrics.error, render=render
    )
    app.add_middleware(TraceContext)  # a client's traceparent, for every request it makes


def _add_routes(app: FastAPI, served: Served, ui: bool) -> None:
    def not_found(model: str) -> ApiError:
        return model_not_found(served, model)

    add_chat_route(app, served, not_found)
    add_responses_route(app, served, not_found)
    add_messages_route(app, served, not_found)
    add_events_api(app, served)
    if ui:
        add_ui(app)
    add_model_routes(app, served)
    add_ops_routes(app, served)


def _install_error_handlers(app: FastAPI, metrics: Metrics, redactor: Redactor) -> None:
    """Every error leaves in OpenAI's shape (Anthropic's under /v1/messages), including
    FastAPI's own 404/405/422."""

    def reply(request: Request, error: ApiError) -> Response:
        metrics.error(error.code or error.type)
        return render(request.url.path, error)

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return reply(request, exc)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return reply(request, validation_error(list(exc.errors())))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        error = ApiError(exc.status_code, str(exc.detail), code=code, headers=exc.headers)
        return reply(request, error)

    async def on_moa_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MoAError)
        error = from_moa_error(exc)
        error.message = redactor.text(error.message)
        return reply(request, error)

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.error("internal error: %s", redactor.text(f"{type(exc).__name__}: {exc}"))
        return reply(request, ApiError(500, "internal server error", type="server_error"))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(MoAError, on_moa_error)
    app.add_exception_handler(Exception, on_crash)


def _docs_paths(app: FastAPI) -> list[str]:
    paths = [app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url]
    return [p for p in paths if p]


def _build_all(recipes: Mapping[str, Recipe], registry: Registry) -> dict[str, MoA]:
    """Build every recipe on one registry: one client and one set of rate limits per provider
    for the whole process, however many recipes use it."""
    recipe_lib.check_shared_providers(list(recipes.values()))
    return {name: recipe_lib.build(recipe, registry) for name, recipe in recipes.items()}
