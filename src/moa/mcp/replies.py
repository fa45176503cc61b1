"""What the tools answer: pydantic models (the tools' output schemas, so a client can read
the fields) and the text a model reads in the tool's result."""

from __future__ import annotations

from pydantic import BaseModel, Field

from moa.pricing import format_usd
from moa.recipes.schema import Recipe
from moa.server.security import Redactor
from moa.trace import CallRecord, Result


class Proposal(BaseModel):
    layer: int
    model: str
    status: str = Field(description="ok, failed, or cancelled (cut by a deadline or quorum)")
    text: str
    error: str | None = None


class Cost(BaseModel):
    usd: float | None = Field(description="What the run cost; null when a price is unknown")
    known_usd: float = Field(description="The cost of the calls whose price is known")
    input_tokens: int
    output_tokens: int
    calls: int
    unpriced: list[str] = Field(description="Models whose price is unknown")


class AskReply(BaseModel):
    recipe: str
    answer: str
    aggregator: str | None = Field(description="The model that wrote the answer")
    failed: list[str] = Field(description="Members that did not contribute, and why")
    proposals: list[Proposal] | None = None
    cost: Cost | None = None


class RecipeInfo(BaseModel):
    name: str
    description: str
    layers: list[list[str]] = Field(description="Each proposal layer's models, in order")
    aggregator: str
    strategy: str
    max_cost_usd: float | None


class RecipeList(BaseModel):
    default: str
    recipes: list[RecipeInfo]


def describe(recipe: Recipe) -> RecipeInfo:
    layers = [
        [m if isinstance(m, str) else m.model for m in layer.models]
        for layer in recipe.layers
        for _ in range(layer.repeat)
    ]
    return RecipeInfo(
        name=recipe.name,
        description=recipe.description,
        layers=layers,
        aggregator=recipe.aggregator.model,
        strategy=recipe.aggregator.strategy,
        max_cost_usd=recipe.max_cost_usd,
    )


def _failure(call: CallRecord) -> str:
    return f"layer {call.layer} · {call.model}: {call.error_kind or call.status}"


def reply(name: str, result: Result, *, proposals: bool, cost: bool, scrub: Redactor) -> AskReply:
    """The run as the tool returns it; the proposals and the cost only when asked for."""
    usage = result.usage
    return AskReply(
        recipe=name,
        answer=result.text,
        aggregator=result.aggregator_model,
        failed=[scrub.text(_failure(c)) for c in result.failures],
        proposals=[
            Proposal(
                layer=c.layer,
                model=c.model,
                status=c.status,
                text=c.output,
                error=scrub.text(c.error) if c.error else None,
            )
            for c in result.proposals()
        ]
        if proposals
        else None,
        cost=Cost(
            usd=result.cost_usd,
            known_usd=result.known_cost_usd,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            calls=len(result.calls),
            unpriced=sorted({c.model for c in result.unpriced}),
        )
        if cost
        else None,
    )


def as_text(answer: AskReply) -> str:
    """The answer first (what the calling model needs), then what it asked for besides."""
    parts = [answer.answer]
    if answer.failed:
        parts.append(f"(not every member answered — {'; '.join(answer.failed)})")
    if answer.proposals is not None:
        parts.append("## Proposals")
        for p in answer.proposals:
            body = p.text if p.status == "ok" else f"({p.status}: {p.error or 'no answer'})"
            parts.append(f"### layer {p.layer} · {p.model}\n{body}")
    if answer.cost is not None:
        c = answer.cost
        spent = format_usd(c.usd) if c.usd is not None else "unknown"
        line = (
            f"## Cost\n{spent} ({c.input_tokens:,} input + {c.output_tokens:,} output tokens, "
            f"{c.calls} calls)"
        )
        if c.unpriced:
            line += f"; no price known for {', '.join(c.unpriced)}"
        parts.append(line)
    return "\n\n".join(parts)
