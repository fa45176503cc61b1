"""The FastAPI app: any loaded recipe answers as a model on OpenAI's chat completions API.

The app is stateless between requests (each run is independent; only counters are kept), so
any number of processes can serve the same recipes behind a load balancer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, PlainTextResponse, Response

from moa import recipes as recipe_lib
from moa.engine import MoA
from moa.errors import MoAError
from moa.providers.registry import Registry
from moa.recipes.schema import Recipe
from moa.server.capabilities import capabilities, lacking_capabilities
from moa.server.errors import ApiError, from_moa_error
from moa.server.events_api import Served, add_events_api
from moa.server.limits import BodyLimit, RunSlots
from moa.server.metrics import Metrics
from moa.server.openapi import (
    CHAT_RESPONSES,
    METRICS_RESPONSES,
    Health,
    ModelCard,
    ModelList,
    errors,
)
from moa.server.openapi import install as install_openapi
from moa.server.reasoning import layers_mode
from moa.server.responses import add_responses_route
from moa.server.runs import Run
from moa.server.schemas import (
    ChatCompletionRequest,
    check_supported,
    to_answering,
    to_messages,
    to_sampling,
    validation_error,
)
from moa.server.security import AuthGate, BearerAuth, Redactor
from moa.server.ui import UI_PATHS, add_ui
from moa.types import Sampling

log = logging.getLogger("moa.server")

DEFAULT_MAX_CONCURRENT_RUNS = 16
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
_TRUTHY = {"1", "true", "yes", "on"}
# What `layers_mode` accepts, in any case and with spaces around.
_LAYERS_HEADER = r"^\s*([Rr][Ee][Aa][Ss][Oo][Nn][Ii][Nn][Gg]|[Oo][Ff][Ff])\s*$"


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
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for mixture in mixtures.values():
            await mixture.aclose()
        metrics.close()

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
    app.state.metrics = metrics
    app.state.slots = slots
    auth = BearerAuth(api_keys)
    # The schema and its docs page are open like /healthz: they hold nothing secret.
    open_paths = ["/healthz", *_docs_paths(app), *(UI_PATHS if ui else ())]
    install_openapi(
        app,
        list(mixtures),
        auth=auth.enabled,
        open_paths=open_paths,
        lacking=lacking_capabilities(recipes, mixtures),
    )
    # Outermost last: auth runs before the body is buffered and measured.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, on_refuse=metrics.error)
    app.add_middleware(AuthGate, auth=auth, open_paths=open_paths, on_refuse=metrics.error)
    _install_error_handlers(app, metrics, redactor)

    def model_card(name: str) -> dict[str, Any]:
        card = {"id": name, "object": "model", "created": created, "owned_by": "moa"}
        return {**card, **capabilities(recipes[name], mixtures[name])}

    def _model_not_found(model: str) -> ApiError:
        return ApiError(
            404,
            f"The model {model!r} does not exist; this server has "
            f"{', '.join(sorted(mixtures))} (GET /v1/models lists them)",
            param="model",
            code="model_not_found",
        )

    @app.post("/v1/chat/completions", response_model=None, responses=CHAT_RESPONSES)
    async def chat_completions(
        body: ChatCompletionRequest,
        request: Request,
        x_moa_trace: Annotated[
            str | None, Header(description="moa extension: `true` adds the run's trace.")
        ] = None,
        x_moa_layers: Annotated[
            str | None,
            Header(
                description="moa extension: `reasoning` streams the layers as reasoning.",
                json_schema_extra={"pattern": _LAYERS_HEADER},
            ),
        ] = None,
    ) -> Response:
        mixture = mixtures.get(body.model)
        if mixture is None:
            raise _model_not_found(body.model)
        check_supported(body)
        layers = layers_mode(
            (body.model_extra or {}).get("moa_layers"),
            x_moa_layers,
            recipes[body.model].show_layers,
        )
        messages, requested = to_messages(body), to_sampling(body)
        to_all = recipes[body.model].request_sampling == "all"
        run = Run(
            model=body.model,
            moa=mixture,
            messages=messages,
            sampling=requested if to_all else Sampling(),
            aggregator_sampling=Sampling() if to_all else requested,
            slot=slots.take(),
            metrics=metrics,
            redactor=redactor,
            trace=bool(body.moa_trace) or (x_moa_trace or "").strip().lower() in _TRUTHY,
            include_usage=body.include_usage,
            max_cost_usd=body.moa_max_cost_usd,
            reasoning=layers is not None,
            answering=to_answering(body),
        )
        if body.stream:
            return await run.stream(request.receive)
        return await run.respond(request.receive)

    add_responses_route(
        app,
        mixtures=mixtures,
        recipes=recipes,
        slots=slots,
        metrics=metrics,
        redactor=redactor,
        model_not_found=_model_not_found,
    )
    add_events_api(app, Served(recipes, mixtures, registry, slots, metrics, redactor))
    if ui:
        add_ui(app)

    @app.get("/v1/models", response_model=ModelList)
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(name) for name in sorted(mixtures)]}

    @app.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=errors(404))
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id not in mixtures:
            raise ApiError(
                404, f"The model {model_id!r} does not exist", param="model", code="model_not_found"
            )
        return model_card(model_id)

    @app.get("/healthz", response_model=Health)
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "models": sorted(mixtures),
            "runs_in_progress": slots.active,
            "max_concurrent_runs": slots.limit,
        }

    @app.get("/metrics", response_class=PlainTextResponse, responses=METRICS_RESPONSES)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


def _install_error_handlers(app: FastAPI, metrics: Metrics, redactor: Redactor) -> None:
    """Every error leaves in OpenAI's shape, including FastAPI's own 404/405/422."""

    def reply(error: ApiError) -> JSONResponse:
        metrics.error(error.code or error.type)
        return error.response()

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return reply(exc)

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return reply(validation_error(list(exc.errors())))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return reply(ApiError(exc.status_code, str(exc.detail), code=code, headers=exc.headers))

    async def on_moa_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MoAError)
        error = from_moa_error(exc)
        error.message = redactor.text(error.message)
        return reply(error)

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.error("internal error: %s", redactor.text(f"{type(exc).__name__}: {exc}"))
        return reply(ApiError(500, "internal server error", type="server_error"))

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
