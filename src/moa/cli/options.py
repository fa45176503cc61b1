"""Turning command-line overrides into a recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moa.errors import ConfigError
from moa.recipes.schema import AggregatorSpec, LayerSpec, ModelSpec, Recipe
from moa.types import Answering, ResponseFormat, Tools


def answering_options(schema: str | None, tools: Path | None) -> Answering:
    """`--schema` (a JSON schema, inline or a file) and `--tools` (a JSON file holding a list
    of OpenAI function specs) as what the aggregator is asked of."""
    response_format = None
    if schema is not None:
        spec = _json("--schema", schema if schema.lstrip().startswith("{") else Path(schema))
        if not isinstance(spec, dict):
            raise ConfigError("--schema must be a JSON schema object")
        response_format = ResponseFormat("response", spec)
    specs = None
    if tools is not None:
        listed = _json("--tools", tools)
        if not isinstance(listed, list) or not all(isinstance(t, dict) for t in listed):
            raise ConfigError('--tools must hold a JSON list of {"type": "function", ...} specs')
        specs = Tools(tuple(listed))
    return Answering(tools=specs, response_format=response_format)


def _json(option: str, source: str | Path) -> Any:
    try:
        text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{option}: {exc}") from None


def apply_overrides(
    recipe: Recipe,
    *,
    proposers: list[str] | None = None,
    aggregator: str | None = None,
    layers: int | None = None,
) -> Recipe:
    """`--proposer`, `--aggregator` and `--layers N` (N-1 proposal layers, then the
    aggregator, as the reference counts them) applied to a recipe."""
    updates: dict[str, object] = {}
    proposal_layers = list(recipe.layers)
    if proposers:
        proposal_layers = [LayerSpec(models=list[str | ModelSpec](proposers))]
    if layers is not None:
        if layers < 1:
            raise ConfigError("--layers must be at least 1 (1 = the aggregator alone)")
        if layers > 1 and not proposal_layers:
            raise ConfigError(f"--layers {layers} needs proposers: add --proposer MODEL")
        base = proposal_layers[0] if proposal_layers else None
        proposal_layers = (
            [] if base is None else [base.model_copy(update={"repeat": 1})] * (layers - 1)
        )
    if proposers or layers is not None:
        updates["layers"] = proposal_layers
    if aggregator:
        # The recipe's aggregator settings belong to its model; the new one starts clean.
        updates["aggregator"] = AggregatorSpec(model=aggregator, prompt=recipe.aggregator.prompt)
    return recipe.model_copy(update=updates) if updates else recipe
