"""The recipe file format (TOML), validated with pydantic: unknown keys are errors."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from moa.call.prompts import AGGREGATE_AND_SYNTHESIZE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplingSpec(_Strict):
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    seed: int | None = None
    stop: list[str] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


class PriceSpec(_Strict):
    """USD per million tokens, over the catalogue's price (a cost the provider reports wins)."""

    input: Annotated[float, Field(ge=0)]
    output: Annotated[float, Field(ge=0)]


class ModelSpec(SamplingSpec):
    model: str
    system: str | None = None
    system_role: bool | None = None
    context_window: Annotated[int, Field(ge=256)] | None = None
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    price: PriceSpec | None = None
    samples: Annotated[int, Field(ge=1)] = 1  # Self-MoA: calls with distinct seeds
    # Few-shot example turns before the conversation: [["question", "answer"], ...]
    examples: list[tuple[str, str]] = Field(default_factory=list)


class LayerSpec(_Strict):
    models: list[str | ModelSpec] = Field(min_length=1)
    repeat: Annotated[int, Field(ge=1)] = 1
    prompt: str | None = None
    min_proposals: Annotated[int, Field(ge=1)] | None = None
    deadline_s: Annotated[float, Field(gt=0)] | None = None
    stop_when: Literal["agree"] | None = None  # skip the remaining layers when …
    agree: Annotated[float, Field(gt=0, le=1)] | None = None  # … this share agrees (0.6)
    filter: Literal["cluster"] | None = None  # drop outlier answers before passing them on

    @model_validator(mode="after")
    def _quorum_fits(self) -> LayerSpec:
        slots = sum(1 if isinstance(m, str) else m.samples for m in self.models)
        if self.min_proposals is not None and self.min_proposals > slots:
            raise ValueError(
                f"min_proposals ({self.min_proposals}) exceeds the layer's {slots} calls"
            )
        if self.agree is not None and self.stop_when is None:
            raise ValueError('agree is the share for stop_when = "agree"; set stop_when too')
        return self


class AggregatorSpec(ModelSpec):
    prompt: str | None = None
    fallbacks: list[str | ModelSpec] = Field(default_factory=list)
    strategy: str = "synthesize"  # how the proposals become the answer (moa.strategies)
    top_k: Annotated[int, Field(ge=1)] | None = None  # `rank`: how many answers go on
    window: Annotated[int, Field(ge=2)] | None = None  # Self-MoA-Seq: proposals per window
    # Start on the proposals' first chunks and continue as more arrive (moa.engine.staircase).
    staircase: bool = False
    chunk_tokens: Annotated[int, Field(ge=1)] | None = None
    chunk_growth: Annotated[float, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _strategy_options(self) -> AggregatorSpec:
        from moa import strategies  # the plugin table, read when a recipe names a strategy

        if self.strategy not in strategies.BUILTIN and self.strategy not in strategies.names():
            raise ValueError(
                f"unknown strategy {self.strategy!r} — use one of "
                f"{', '.join(strategies.names())}, or install a plugin that provides it"
            )
        if self.top_k is not None and self.strategy != "rank":
            raise ValueError('top_k is for strategy = "rank" (how many answers it passes on)')
        if self.samples != 1 or any(
            not isinstance(f, str) and f.samples != 1 for f in self.fallbacks
        ):
            raise ValueError("samples is for proposers; an aggregator answers once")
        return self


class RetrySpec(_Strict):
    max_attempts: Annotated[int, Field(ge=1)] = 4
    max_elapsed_s: Annotated[float, Field(gt=0)] = 90.0
    base_delay_s: Annotated[float, Field(ge=0)] = 0.5
    max_delay_s: Annotated[float, Field(ge=0)] = 20.0


class RateLimitSpec(_Strict):
    rpm: Annotated[float, Field(gt=0)] | None = None
    tpm: Annotated[float, Field(gt=0)] | None = None
    max_concurrency: Annotated[int, Field(ge=1)] | None = None


class ProviderSpec(RateLimitSpec):
    """A new OpenAI-compatible endpoint (base_url required), or settings for a built-in one."""

    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: Annotated[float, Field(gt=0)] | None = None  # per call; the recipe's if unset
    retry: RetrySpec | None = None
    # What the endpoint accepts (unset: the built-in provider's declared values, else none).
    tools: bool | None = None
    json_schema: bool | None = None
    logprobs: bool | None = None
    n: bool | None = None
    continuation: Literal["none", "assistant"] | None = None


class Recipe(_Strict):
    name: str = "custom"
    description: str = ""
    prompt: str = AGGREGATE_AND_SYNTHESIZE  # default aggregate-and-synthesize text
    timeout_s: Annotated[float, Field(gt=0)] = 120.0
    # Which calls a served request's temperature / max_tokens / stop / seed apply to: the
    # aggregator only (proposers keep the recipe's own, e.g. Self-MoA's varied temperatures),
    # or every call of the run.
    request_sampling: Literal["aggregator", "all"] = "aggregator"
    # USD a run may spend at most; each stage is refused beforehand if it could pass it.
    max_cost_usd: Annotated[float, Field(gt=0)] | None = None
    # `moa serve` streams the proposal layers as `reasoning_content` (a chat UI's thinking
    # block) unless a request says otherwise.
    show_layers: Literal["off", "reasoning"] = "off"
    # "auto": the aggregator is asked first, with a private `consult_the_panel` tool, and the
    # layers run only when it calls it (moa.engine.invocation); "always": they always run.
    invocation: Literal["always", "auto"] = "always"
    defaults: SamplingSpec = Field(default_factory=SamplingSpec)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    layers: list[LayerSpec] = Field(default_factory=list)
    aggregator: AggregatorSpec
    providers: dict[str, ProviderSpec] = Field(default_factory=dict)
    # Per model, keyed "provider:model" (per provider: use [providers.NAME]).
    rate_limits: dict[str, RateLimitSpec] = Field(default_factory=dict)
