"""Recipes a client may see and edit: the playground's recipe editor and "compare with one model".

A client sees the served recipes without their provider settings, and may send an edited recipe
back (`moa_recipe` in the body of `POST /v1/moa/runs`). The edit is validated with the recipe
schema and may only use models of the providers the served recipes already use: it cannot
declare providers (a base_url would let a client aim the server's keys at any host) or rate
limits (they are the operator's), and its size is capped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from moa.recipes.schema import ModelSpec, Recipe
from moa.server.errors import bad_request

MAX_LAYERS = 6
MAX_PROPOSERS = 32  # proposer calls in one run, over all layers
_HIDDEN = {"providers", "rate_limits"}


def recipe_models(recipe: Recipe) -> list[str]:
    """Every `provider:model` a recipe calls, in order, without repeats."""
    models: list[str] = []
    for layer in recipe.layers:
        models += [_name(m) for m in layer.models]
    models.append(recipe.aggregator.model)
    models += [_name(m) for m in recipe.aggregator.fallbacks]
    return list(dict.fromkeys(models))


def _name(spec: str | ModelSpec) -> str:
    return spec if isinstance(spec, str) else spec.model


def strategies() -> list[str]:
    """The aggregation strategies a recipe may name (built-in and installed plugins)."""
    from moa import strategies as registry

    return registry.names()


def catalog(recipes: Mapping[str, Recipe]) -> dict[str, Any]:
    """What `GET /v1/moa/recipes` answers: the recipes as editable JSON, and the models."""
    models = [m for r in recipes.values() for m in recipe_models(r)]
    return {
        "object": "list",
        "data": [
            {"id": name, "recipe": r.model_dump(mode="json", exclude=_HIDDEN)}
            for name, r in sorted(recipes.items())
        ],
        "models": sorted(set(models)),
        "strategies": strategies(),
        "limits": {"max_layers": MAX_LAYERS, "max_proposers": MAX_PROPOSERS},
    }


class OverridePolicy:
    """Checks an edited recipe against what this server already serves."""

    def __init__(self, recipes: Iterable[Recipe]) -> None:
        self.providers = {
            m.partition(":")[0] for r in recipes for m in recipe_models(r) if ":" in m
        }

    def check(self, data: Any) -> Recipe:
        if not isinstance(data, dict):
            raise bad_request("moa_recipe must be a recipe as a JSON object", param="moa_recipe")
        declared = sorted(_HIDDEN & {k for k, v in data.items() if v})
        if declared:
            raise bad_request(
                f"moa_recipe cannot set {', '.join(declared)}: those are the server's "
                f"(use models of the providers it serves: {', '.join(sorted(self.providers))})",
                param=f"moa_recipe.{declared[0]}",
            )
        try:
            recipe = Recipe.model_validate(data)
        except ValidationError as exc:
            raise bad_request(f"moa_recipe: {_describe(exc)}", param="moa_recipe") from None
        self._check_size(recipe)
        for model in recipe_models(recipe):
            if model.partition(":")[0] not in self.providers:
                raise bad_request(
                    f"moa_recipe: model {model!r} is not from a provider this server serves "
                    f"({', '.join(sorted(self.providers))})",
                    param="moa_recipe",
                )
        return recipe

    def _check_size(self, recipe: Recipe) -> None:
        layers = sum(layer.repeat for layer in recipe.layers)
        proposers = sum(layer.repeat * len(layer.models) for layer in recipe.layers)
        if layers > MAX_LAYERS or proposers > MAX_PROPOSERS:
            raise bad_request(
                f"moa_recipe is too large ({layers} layers, {proposers} proposer calls); this "
                f"server allows {MAX_LAYERS} layers and {MAX_PROPOSERS} proposer calls",
                param="moa_recipe.layers",
            )


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"] if not _is_tag(p)) or "(top level)"
        reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{where}: {reason}")
    return "; ".join(dict.fromkeys(problems))


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and (part in ("str", "ModelSpec") or part.startswith("function-"))
