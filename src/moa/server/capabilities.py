"""What each served recipe supports, on its `GET /v1/models` entry, so a client can check
before sending (as llama.cpp's `/props` does).

    {"id": "together-moa", "object": "model", …,
     "capabilities": {"chat_completions": true, "responses": true, "streaming": true,
                      "layer_streaming": false, "tools": false, "structured_output": false,
                      "logprobs": false, "n": false, "max_cost_usd": true},
     "moa": {"layers": 1, "proposers": [...], "aggregator": "...", "max_cost_usd": null}}

A capability is true when the server honours it for that recipe: tools, structured output
and logprobs when every aggregator candidate's provider declares them (`[providers.NAME]`
`tools = true` etc. in the recipe; see BUILTIN_PROVIDERS for the built-in ones); `n` always
(n aggregator calls over one set of proposals). A request that needs one that is false is
refused with a 400 naming the field, never silently ignored.
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
    proposers = sorted(
        {m if isinstance(m, str) else m.model for layer in recipe.layers for m in layer.models}
    )
    return {
        "capabilities": {
            "chat_completions": True,
            "responses": True,
            "streaming": True,  # the aggregator's tokens
            "layer_streaming": False,  # proposals arrive in the trace, after the answer
            "tools": all(c.tools for c in declared),
            "structured_output": all(c.json_schema for c in declared),
            "logprobs": all(c.logprobs for c in declared),
            "n": True,
            "max_cost_usd": True,  # the `moa_max_cost_usd` request extension
        },
        "moa": {
            "layers": sum(layer.repeat for layer in recipe.layers),
            "proposers": proposers,
            "aggregator": recipe.aggregator.model,
            "max_cost_usd": recipe.max_cost_usd,
        },
    }


def lacking_capabilities(
    recipes: Mapping[str, Recipe], mixtures: Mapping[str, MoA]
) -> dict[str, list[str]]:
    """For the OpenAPI document: each refusable capability → the served models without it."""
    lacking: dict[str, list[str]] = {"tools": [], "structured_output": [], "logprobs": []}
    for name in recipes:
        declared = capabilities(recipes[name], mixtures[name])["capabilities"]
        for capability, models in lacking.items():
            if not declared[capability]:
                models.append(name)
    return lacking
