"""`POST /v1/chat/completions`: a loaded recipe answers as an OpenAI chat model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import FastAPI, Header, Request
from starlette.responses import Response

from moa.server.errors import ApiError
from moa.server.openapi import CHAT_RESPONSES
from moa.server.reasoning import layers_mode
from moa.server.runs import ChatRun, Served, new_run, wants_trace
from moa.server.schemas import (
    ChatCompletionRequest,
    check_supported,
    to_answering,
    to_messages,
    to_sampling,
)
from moa.server.side import is_side_request

# What `layers_mode` accepts, in any case and with spaces around.
_LAYERS_HEADER = r"^\s*([Rr][Ee][Aa][Ss][Oo][Nn][Ii][Nn][Gg]|[Oo][Ff][Ff])\s*$"


def add_chat_route(
    app: FastAPI, served: Served, model_not_found: Callable[[str], ApiError]
) -> None:
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
        x_moa_side_request: Annotated[
            str | None,
            Header(
                description="moa extension: `true` answers with the recipe's aggregator alone "
                "(a chat UI's title or tags), `false` with the whole mixture."
            ),
        ] = None,
    ) -> Response:
        if body.model not in served.mixtures:
            raise model_not_found(body.model)
        check_supported(body)
        recipe = served.recipes[body.model]
        layers = layers_mode(
            (body.model_extra or {}).get("moa_layers"), x_moa_layers, recipe.show_layers
        )
        messages = to_messages(body)
        run = new_run(
            ChatRun,
            served,
            body.model,
            messages,
            to_sampling(body),
            trace=wants_trace(body.moa_trace, x_moa_trace),
            max_cost_usd=body.moa_max_cost_usd,
            answering=to_answering(body),
            include_usage=body.include_usage,
            reasoning=layers is not None,
            side=is_side_request(recipe.side_requests, messages, x_moa_side_request),
        )
        if body.stream:
            return await run.stream(request.receive)
        return await run.respond(request.receive)
