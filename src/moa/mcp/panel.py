"""The recipes `moa mcp` offers, built once on one registry (as `moa serve` builds them), and
one request run on them, its events reported as they happen."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing

from moa import recipes as recipe_lib
from moa.engine.mixture import MoA
from moa.engine.options import RunOptions
from moa.errors import RecipeError
from moa.events import Done
from moa.mcp.progress import LayerProgress, Step
from moa.providers.registry import Registry
from moa.recipes.schema import Recipe
from moa.server.main import load_recipes
from moa.server.security import Redactor
from moa.trace import Result

OnStep = Callable[[Step], Awaitable[None]]


class Panel:
    """Recipes by the name a tool call gives (the recipe's `name`); the first is the default.

    Every recipe is built now, so a missing key or extra stops `moa mcp` at start, before a
    client has connected, rather than on its first call."""

    def __init__(self, recipes: Mapping[str, Recipe]) -> None:
        if not recipes:
            raise RecipeError("no recipe to offer: pass one with -r RECIPE")
        recipe_lib.check_shared_providers(list(recipes.values()))
        registry = Registry()  # one client and one set of rate limits per provider
        self.recipes = dict(recipes)
        self.mixtures: dict[str, MoA] = {
            name: recipe_lib.build(recipe, registry) for name, recipe in recipes.items()
        }
        self.redactor = Redactor.for_recipes(recipes.values())
        self.default = next(iter(recipes))

    @classmethod
    def load(cls, refs: Sequence[str]) -> Panel:
        """Recipes taken as `moa serve -r` takes them: built-in names or TOML paths."""
        return cls(load_recipes(refs))

    @property
    def names(self) -> list[str]:
        return list(self.recipes)

    def pick(self, name: str | None) -> str:
        if name is None or name == "":
            return self.default
        if name not in self.recipes:
            raise RecipeError(
                f"no recipe {name!r} here — this server offers {', '.join(self.names)} "
                f"(the list_recipes tool describes them)"
            )
        return name

    async def run(
        self, prompt: str, name: str, *, max_cost_usd: float | None, on_step: OnStep
    ) -> Result:
        """One run of recipe `name`, each step reported through `on_step` as it happens."""
        mixture = self.mixtures[name]
        progress = LayerProgress(mixture)
        options = RunOptions.of(max_cost_usd=max_cost_usd, proposal_deltas=False)
        # Closed here, on this loop, also when the client cancels the call mid-run.
        async with aclosing(mixture.events(prompt, options)) as events:
            async for event in events:
                step = progress.step(event)
                if step is not None:
                    await on_step(step)
                if isinstance(event, Done):
                    return event.result
        raise AssertionError("events() always ends with Done or an exception")

    async def aclose(self) -> None:
        for mixture in self.mixtures.values():
            await mixture.aclose()
