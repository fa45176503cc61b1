"""The listing and operations routes: `/v1/models`, `/healthz`, `/metrics`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from starlette.responses import PlainTextResponse, Response

from moa.server.capabilities import capabilities
from moa.server.errors import ApiError
from moa.server.openapi import METRICS_RESPONSES, Health, ModelCard, ModelList, errors
from moa.server.runs import Served


def model_not_found(served: Served, model: str) -> ApiError:
    return ApiError(
        404,
        f"The model {model!r} does not exist; this server has "
        f"{', '.join(sorted(served.mixtures))} (GET /v1/models lists them)",
        param="model",
        code="model_not_found",
    )


def add_model_routes(app: FastAPI, served: Served) -> None:
    recipes, mixtures = served.recipes, served.mixtures
    created = int(time.time())

    def model_card(name: str) -> dict[str, Any]:
        card = {"id": name, "object": "model", "created": created, "owned_by": "moa"}
        return {**card, **capabilities(recipes[name], mixtures[name])}

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


def add_ops_routes(app: FastAPI, served: Served) -> None:
    @app.get("/healthz", response_model=Health)
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "models": sorted(served.mixtures),
            "runs_in_progress": served.slots.active,
            "max_concurrent_runs": served.slots.limit,
        }

    @app.get("/metrics", response_class=PlainTextResponse, responses=METRICS_RESPONSES)
    async def prometheus() -> Response:
        return Response(served.metrics.render(), media_type=served.metrics.content_type)
