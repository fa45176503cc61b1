"""What each served recipe supports, on its `GET /v1/models` entry, so a client can check
before sending (as llama.cpp's `/props` does).

    {"id": "together-moa", "object": "model", …,
     "capabilities": {"chat_completions": true, "responses": true, "streaming": true,
                      "layer_streaming": true, "tools": false, "structured_output": false,
                      "logprobs": false, "n": true, "max_cost_usd": true},
     "moa": {"layers": 1, "proposers": [...], "aggregator": "...", "strategy": "synthesize",
             "show_layers": "off", "max_cost_usd": null}}

Each capability says what a request asking for it gets, and one that is false is refused with
a 400 naming the field, never silently ignored. Tools, structured output and logprobs need
every aggregator candidate's provider to declare them (`[providers.NAME]` `tools = true` etc.
in the recipe; see BUILTIN_PROVIDERS for the built-in ones) and a strategy that writes its
answer: one that may answer with a proposal verbatim (`medoid`, `vote`, `select`) could not
follow them, nor give `n` different answers. `layer_streaming`: the proposals can be streamed
as they are written (`moa_layers` on chat completions, the events API), for a recipe that has
proposal layers; `moa.show_layers` says whether a request gets them without asking.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from moa.engine.mixture import MoA
from moa.providers.registry import split_model_ref
from moa.recipes.schema import Recipe


def capabilities(recipe: Recipe, mixture: MoA) -> dict[str, Any]:
    declared = [
        mixture.registry.capabilities(split_model_ref(agent.model)[0])
        for agent in mixture.aggregator.candidates
    ]
    writes = not mixture.aggregator.strategy.answers_verbatim
    proposers = sorted(
        {m if isinstance(m, str) else m.model for layer in recipe.layers for m in layer.models}
    )
    return {
        "capabilities": {
            "chat_completions": True,
            "responses": True,
            "streaming": True,  # the aggregator's tokens
            "layer_streaming": bool(recipe.layers),
            "tools": writes and all(c.tools for c in declared),
            "structured_output": writes and all(c.json_schema for c in declared),
            "logprobs": writes and all(c.logprobs for c in declared),
            "n": writes,  # n aggregator answers over one set of proposals
            "max_cost_usd": True,  # the `moa_max_cost_usd` request extension
        },
        "moa": {
            "layers": sum(layer.repeat for layer in recipe.layers),
            "proposers": proposers,
            "aggregator": recipe.aggregator.model,
            "strategy": mixture.aggregator.strategy.name,
            "show_layers": recipe.show_layers,
            "max_cost_usd": recipe.max_cost_usd,
        },
    }


def lacking_capabilities(
    recipes: Mapping[str, Recipe], mixtures: Mapping[str, MoA]
) -> dict[str, list[str]]:
    """For the OpenAPI document: each refusable capability → the served models without it."""
    lacking: dict[str, list[str]] = {
        "tools": [],
        "structured_output": [],
        "logprobs": [],
        "n": [],
    }
    for name in recipes:
        declared = capabilities(recipes[name], mixtures[name])["capabilities"]
        for capability, models in lacking.items():
            if not declared[capability]:
                models.append(name)
    return lacking
