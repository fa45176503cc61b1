"""Turning command-line overrides into a recipe."""

from __future__ import annotations

from moa.errors import ConfigError
from moa.recipes.schema import AggregatorSpec, LayerSpec, ModelSpec, Recipe


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
