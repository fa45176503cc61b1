"""The recipe file reference (docs/reference/recipe.md), written from the schema itself.

Every key, type, bound and default comes from the pydantic models in moa.recipes.schema, and
each key's text from its attribute docstring there, so the page cannot say what the code does
not do. `python -m moa.recipes.reference > docs/reference/recipe.md` rewrites it; a test and the
docs build fail while the committed page differs.
"""

from __future__ import annotations

import ast
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from moa.recipes import schema

# Each table of a recipe file, in the order a reader meets them: (heading, anchor, model, intro).
SECTIONS: tuple[tuple[str, str, type[BaseModel], str], ...] = (
    ("The top level", "top-level", schema.Recipe, "Keys at the top of the file."),
    (
        "`[defaults]`",
        "defaults",
        schema.SamplingSpec,
        "Sampling for every call of the recipe unless a model sets its own.",
    ),
    (
        "`[retry]`, and `retry` in `[providers.NAME]`",
        "retry",
        schema.RetrySpec,
        "How often and how long a failed call is tried again.",
    ),
    (
        "`[[layers]]`",
        "layers",
        schema.LayerSpec,
        "One table per proposal layer, in order.",
    ),
    (
        "A model: an entry of `models` or `fallbacks`",
        "model",
        schema.ModelSpec,
        'A `"provider:model"` string, or a table with `model` and any of these keys.',
    ),
    (
        "`[aggregator]`",
        "aggregator",
        schema.AggregatorSpec,
        "The model that writes the answer: every model key above but `samples`, and these.",
    ),
    (
        "`price` (of a model)",
        "price",
        schema.PriceSpec,
        "USD per million tokens, over the catalogue's price (a cost the provider reports wins).",
    ),
    (
        "`[providers.NAME]`",
        "providers",
        schema.ProviderSpec,
        "A new OpenAI-compatible endpoint (`base_url` required), or settings for a built-in one.",
    ),
    (
        '`[rate_limits."provider:model"]`',
        "rate-limits",
        schema.RateLimitSpec,
        "One model's own limits (a provider's go under `[providers.NAME]`).",
    ),
    (
        "`batch_api` (of a provider)",
        "batch-api",
        schema.BatchAPISpec,
        "The provider's Batch API limits and discount, for `moa batch --batch-api`.",
    ),
)
_ANCHORS = {model: anchor for _, anchor, model, _ in SECTIONS}
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}
_BOUNDS = (
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
)


def field_docs(source: str) -> dict[tuple[str, str], str]:
    """(class, field) → the attribute docstring under the field, as one line."""
    docs: dict[tuple[str, str], str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for field, after in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(field, ast.AnnAssign)
                and isinstance(field.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.name, field.target.id] = " ".join(after.value.value.split())
    return docs


def _doc(model: type[BaseModel], name: str, docs: dict[tuple[str, str], str]) -> str:
    for cls in model.__mro__:
        if (cls.__name__, name) in docs:
            return docs[cls.__name__, name]
    raise LookupError(
        f"{model.__name__}.{name} has no docstring: write one under the field in "
        f"moa/recipes/schema.py (it is the key's text in docs/reference/recipe.md)"
    )


def _bounds(metadata: typing.Iterable[Any]) -> list[str]:
    out: list[str] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            out += _bounds(item.metadata)
        if isinstance(item, annotated_types.MinLen):
            out.append(f"at least {item.min_length}")
        for kind, attr, sign in _BOUNDS:
            if isinstance(item, kind):
                out.append(f"{sign} {getattr(item, attr)}")
    return out


def type_name(annotation: Any) -> str:
    """A TOML reader's name for a field's type, with its bounds."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        bounds = _bounds(annotation.__metadata__)
        return type_name(args[0]) + (f" ({', '.join(bounds)})" if bounds else "")
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args if a is not type(None))
    if origin is Literal:
        return " or ".join(f'`"{a}"`' for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if origin is dict:
        return f"tables of {type_name(args[1])}, by name"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[table](#{_ANCHORS[annotation]})"
    return _SCALARS[annotation]


def default_text(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        return "empty" if not value or isinstance(value, BaseModel) else f"`{value!r}`"
    if info.default is PydanticUndefined:
        return "**required**"
    if info.default is None:
        return "unset"
    if isinstance(info.default, bool):
        return f"`{str(info.default).lower()}`"
    if isinstance(info.default, str):
        short = info.default if len(info.default) <= 24 else info.default[:24].rstrip() + "…"
        return f'`"{short}"`' if "\n" not in short else "a built-in text"
    return f"`{info.default}`"


def _rows(model: type[BaseModel], docs: dict[tuple[str, str], str]) -> Iterator[str]:
    inherited = schema.ModelSpec if model is schema.AggregatorSpec else None
    for name, info in model.model_fields.items():
        if inherited is not None and name in inherited.model_fields and name != "prompt":
            continue
        annotation = info.rebuild_annotation()
        cells = (f"`{name}`", type_name(annotation), default_text(info), _doc(model, name, docs))
        yield "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render() -> str:
    """The whole page, as Markdown."""
    docs = field_docs(Path(schema.__file__).read_text(encoding="utf-8"))
    out = [
        "# Recipe file reference",
        "",
        "<!-- Generated from src/moa/recipes/schema.py by"
        " `python -m moa.recipes.reference > docs/reference/recipe.md`; do not edit. -->",
        "",
        "Every key a recipe file may hold. Unknown keys and values out of bounds are refused"
        " with the key's path and the reason (`layers.0.modles: unknown key`); see"
        " [Recipes](../guide/recipes.md) for whole recipes.",
    ]
    for heading, anchor, model, intro in SECTIONS:
        out += ["", f"## {heading} {{#{anchor}}}", "", intro, ""]
        out += ["| key | type | default | what it does |", "|---|---|---|---|"]
        out += list(_rows(model, docs))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
