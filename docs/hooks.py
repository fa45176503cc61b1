"""MkDocs build hook: the recipe reference page must be the one the schema writes today."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

PAGE = "reference/recipe.md"


def on_pre_build(config: Any) -> None:
    from moa.recipes import reference

    committed = (Path(config["docs_dir"]) / PAGE).read_text(encoding="utf-8")
    if committed != reference.render():
        raise PluginError(
            f"docs/{PAGE} differs from the recipe schema: run "
            f"`python -m moa.recipes.reference > docs/{PAGE}` and commit it"
        )
