"""The recipe file format (TOML), validated with pydantic: unknown keys are errors."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from moa.call.prompts import AGGREGATE_AND_SYNTHESIZE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplingSpec(_Strict):
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    """Sampling temperature, 0 to 2; unset, the provider's default."""
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    """The most tokens the answer may have (lowered to fit the context window when needed)."""
    seed: int | None = None
    """Seed for providers that take one (the embedded model does); with `samples`, the first of the
    seeds.
    """
    stop: list[str] | None = None
    """Stop sequences: the answer ends before the first of them."""
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    """Nucleus sampling, 0 to 1, as in OpenAI's API; unset, the provider's default."""


class PriceSpec(_Strict):
    """USD per million tokens, over the catalogue's price (a cost the provider reports wins)."""

    input: Annotated[float, Field(ge=0)]
    """USD per million input tokens."""
    output: Annotated[float, Field(ge=0)]
    """USD per million output tokens."""


class ModelSpec(SamplingSpec):
    model: str
    """`provider:model`, e.g. `together:deepseek-ai/DeepSeek-V3` or `local:smollm2`."""
    system: str | None = None
    """This model's own system prompt."""
    system_role: bool | None = None
    """`false` for chat templates without a system role (Gemma's): the references then go into the
    first user turn.
    """
    context_window: Annotated[int, Field(ge=256)] | None = None
    """The model's context window in tokens (default: a built-in value for known models, the loaded
    `n_ctx` for local ones, else 8192).
    """
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    """Seconds per call for this model; wins over its provider's and the recipe's."""
    price: PriceSpec | None = None
    """This model's price, over the catalogue's (a cost the provider reports wins)."""
    samples: Annotated[int, Field(ge=1)] = 1
    """Self-MoA: this many calls of the model, with seeds `seed` + 0…N−1 (else 1…N)."""
    examples: list[tuple[str, str]] = Field(default_factory=list)
    """Few-shot turns put before the conversation: `[["question", "answer"], ...]`."""
    answer_pattern: str | None = None
    """A regex finding the final result for vote, medoid and adaptive sampling (its first group,
    else the match); default the last `Answer: …` line, else the last number. On the aggregator:
    the default of every proposer that sets none.
    """

    @field_validator("answer_pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regex: {exc}") from None
        return value

    required: bool = False
    """The layer waits for this member: its quorum, deadline and `stop_when`, and a staircase's
    early steps (its own timeout still applies)."""


class LayerSpec(_Strict):
    models: list[str | ModelSpec] = Field(min_length=1)
    """The layer's proposers: `provider:model` strings or model tables."""
    repeat: Annotated[int, Field(ge=1)] = 1
    """Run this layer this many times in a row (each sees the previous one's answers)."""
    prompt: str | None = None
    """This layer's aggregate-and-synthesize text (default: the recipe's `prompt`)."""
    min_proposals: Annotated[int, Field(ge=1)] | None = None
    """Quorum: move on once this many answers are in (and `deadline_s` has passed); default all."""
    deadline_s: Annotated[float, Field(gt=0)] | None = None
    """With `min_proposals`: seconds after which the layer moves on with the quorum; stragglers are
    cancelled.
    """
    stop_when: Literal["agree"] | None = None
    """`"agree"`: skip the remaining layers when the share `agree` of this layer's answers agree."""
    agree: Annotated[float, Field(gt=0, le=1)] | None = None
    """The share of answers that must agree for `stop_when = "agree"` (e.g. 0.6)."""
    filter: Literal["cluster"] | None = None
    """`"cluster"`: drop outlier answers (lexical similarity) before they are passed on."""
    adaptive: bool = False
    """Adaptive self-consistency: draw the layer's calls in rounds (`first_round`, then
    `round_size` at a time) and stop once the leading final result cannot be overtaken by the
    calls left, or holds `stop_share` of the answers drawn.
    """
    first_round: Annotated[int, Field(ge=1)] | None = None
    """With `adaptive`: calls in the first round (default 3)."""
    round_size: Annotated[int, Field(ge=1)] | None = None
    """With `adaptive`: calls in each later round (default 2)."""
    stop_share: Annotated[float, Field(gt=0, le=1)] | None = None
    """With `adaptive`: stop once the leader holds this share of the answers drawn."""

    @model_validator(mode="after")
    def _quorum_fits(self) -> LayerSpec:
        slots = sum(1 if isinstance(m, str) else m.samples for m in self.models)
        if self.min_proposals is not None and self.min_proposals > slots:
            raise ValueError(
                f"min_proposals ({self.min_proposals}) exceeds the layer's {slots} calls"
            )
        required = sum(m.samples for m in self.models if not isinstance(m, str) and m.required)
        if self.min_proposals is not None and required > self.min_proposals:
            raise ValueError(
                f"{required} calls of the layer are required but min_proposals is "
                f"{self.min_proposals}: the quorum cannot be met without them — raise "
                f"min_proposals to at least {required}, or mark fewer models required"
            )
        if self.agree is not None and self.stop_when is None:
            raise ValueError('agree is the share for stop_when = "agree"; set stop_when too')
        rounds = (self.first_round, self.round_size, self.stop_share)
        if not self.adaptive and any(v is not None for v in rounds):
            raise ValueError("first_round, round_size and stop_share need adaptive = true")
        if self.adaptive and (self.min_proposals is not None or self.deadline_s is not None):
            raise ValueError("adaptive draws every round whole: drop min_proposals / deadline_s")
        return self


class AggregatorSpec(ModelSpec):
    prompt: str | None = None
    """The aggregator's own aggregate-and-synthesize text (default: the recipe's `prompt`)."""
    fallbacks: list[str | ModelSpec] = Field(default_factory=list)
    """Tried in order when the aggregator fails before its first token."""
    strategy: str = "synthesize"
    """How the proposals become the answer: `synthesize`, `analysis`, `select`, `rank`, `vote`,
    `medoid`, or a plugin's.
    """
    top_k: Annotated[int, Field(ge=1)] | None = None
    """`rank` only: how many of the best-ranked answers are synthesized."""
    window: Annotated[int, Field(ge=2)] | None = None
    """Self-MoA-Seq: synthesize the answers this many at a time."""
    staircase: bool = False
    """Start on the proposals' first chunks and continue as more arrive (needs a provider with
    continuation).
    """
    chunk_tokens: Annotated[int, Field(ge=1)] | None = None
    """Staircase: tokens per proposer before each step (default 64; 32 on the embedded model)."""
    chunk_growth: Annotated[float, Field(ge=1)] | None = None
    """Staircase: each step's chunk is this many times the previous one's (default 1; 4 on the
    embedded model).
    """
    reply: Literal["whole", "final_line"] = "whole"
    """vote / medoid: stream the chosen answer whole, or only the line of its final result."""

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
        if self.required or any(not isinstance(f, str) and f.required for f in self.fallbacks):
            raise ValueError(
                "required is for proposers (a layer waits for them); the aggregator always "
                "answers, or the run fails"
            )
        return self


class RetrySpec(_Strict):
    max_attempts: Annotated[int, Field(ge=1)] = 4
    """Attempts per call, the first included."""
    max_elapsed_s: Annotated[float, Field(gt=0)] = 90.0
    """Seconds a call may spend over all its attempts."""
    base_delay_s: Annotated[float, Field(ge=0)] = 0.5
    """First backoff wait; doubles each attempt (full jitter), unless the server says how long."""
    max_delay_s: Annotated[float, Field(ge=0)] = 20.0
    """The longest backoff wait."""


class RateLimitSpec(_Strict):
    rpm: Annotated[float, Field(gt=0)] | None = None
    """Requests per minute: a ceiling (without it the limiter learns the rate from 429s)."""
    tpm: Annotated[float, Field(gt=0)] | None = None
    """Tokens per minute (estimated before each call)."""
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    """Calls (streams) in flight at once."""


class BatchAPISpec(_Strict):
    """The provider's OpenAI-format Batch API; unset fields: the built-in's, else OpenAI's."""

    max_requests: Annotated[int, Field(ge=1)] | None = None
    """Requests per job at most (OpenAI: 50,000); a layer's calls are split into more jobs."""
    max_bytes: Annotated[int, Field(ge=1024)] | None = None
    """Bytes of a job's input file at most (OpenAI: 200 MB)."""
    discount: Annotated[float, Field(ge=0, lt=1)] | None = None
    """The share taken off the real-time price (0.5: half price)."""
    completion_window: str | None = None
    """The completion window asked for (OpenAI: `"24h"`)."""


class ProviderSpec(RateLimitSpec):
    """A new OpenAI-compatible endpoint (base_url required), or settings for a built-in one."""

    base_url: str | None = None
    """The endpoint's OpenAI-compatible base URL, e.g. `http://localhost:8000/v1` (required for a
    new provider).
    """
    api_key_env: str | None = None
    """The environment variable holding its key; omit when the server needs none."""
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    """Seconds per call on this provider (the recipe's if unset)."""
    retry: RetrySpec | None = None
    """This provider's own retry policy (the recipe's `[retry]` if unset)."""
    tools: bool | None = None
    """Whether the endpoint takes `tools` (unset: the built-in provider's declared value, else no).
    """
    json_schema: bool | None = None
    """Whether it follows a JSON schema (`response_format`)."""
    logprobs: bool | None = None
    """Whether it returns `logprobs`."""
    n: bool | None = None
    """Whether it answers `n > 1` in one request."""
    continuation: Literal["none", "assistant"] | None = None
    """`"assistant"` if it continues a trailing assistant turn (what `staircase` needs)."""
    seed: bool | None = None
    """Whether it takes OpenAI's `seed` (unset: the built-in's, else yes); `false`: not sent."""
    stream_usage: bool | None = None
    """Whether it takes `stream_options.include_usage` (unset: the built-in's, else yes);
    `false`: not sent, and a stream's usage is read from its chunks or estimated."""
    top_k: bool | None = None
    """Whether it takes `top_k` (a Messages API request's; refused for a provider without it)."""
    system_turns: bool | None = None
    """Whether it takes system messages anywhere in a conversation; if not, a later system turn
    joins the user turn beside it."""
    batch_api: bool | BatchAPISpec | None = None
    """--batch-api: `true` (the built-in's limits, else OpenAI's), `false`, or limits."""


class Recipe(_Strict):
    name: str = "custom"
    """The recipe's name: the model name `moa serve` serves it as."""
    description: str = ""
    """One line saying what it is (`moa recipes` lists it)."""
    prompt: str = AGGREGATE_AND_SYNTHESIZE
    """The aggregate-and-synthesize text every layer and the aggregator use unless they set their
    own (default: the reference's).
    """
    timeout_s: Annotated[float, Field(gt=0)] = 120.0
    """Seconds per call (a model's or provider's `timeout_s` wins); `--timeout` on the command
    line.
    """
    request_sampling: Literal["aggregator", "all"] = "aggregator"
    """`moa serve`: a request's `temperature`, `max_tokens`, `stop` and `seed` reach the aggregator
    only, or (`"all"`) every call.
    """
    max_cost_usd: Annotated[float, Field(gt=0)] | None = None
    """USD a run may spend at most; each stage is refused beforehand if it could pass it."""
    show_layers: Literal["off", "reasoning"] = "off"
    """`moa serve`: `"reasoning"` streams the proposal layers as `reasoning_content` (a chat UI's
    thinking block) unless a request says otherwise.
    """
    on_degraded: Literal["answer", "fail"] = "answer"
    """What a degraded run does — one that lost a member it asked for (failed, timed out, cut by a
    deadline or a staircase, a fallback aggregator answering): `"answer"` anyway, saying so on
    every surface, or `"fail"` with the partial trace (DegradedRunError).
    """
    side_requests: Literal["mixture", "aggregator"] = "mixture"
    """`moa serve`: `"aggregator"` answers a chat UI's side requests — Open WebUI's title, tags
    and follow-up tasks, known by their `### Task:` prompt over a `<chat_history>` — with the
    aggregator alone, in one call, rather than with the whole mixture (the `X-MoA-Side-Request`
    header says so per request)."""
    invocation: Literal["always", "auto"] = "always"
    """`"auto"`: the aggregator is asked first, with a private `consult_the_panel` tool, and the
    layers run only when it calls it; `"always"`: they always run."""
    defaults: SamplingSpec = Field(default_factory=SamplingSpec)
    """Sampling for every call unless a model sets its own."""
    retry: RetrySpec = Field(default_factory=RetrySpec)
    """The per-call retry budget (429, 5xx, timeouts, connection errors)."""
    layers: list[LayerSpec] = Field(default_factory=list)
    """The proposal layers, in order; none: the aggregator answers alone."""
    aggregator: AggregatorSpec
    """The model (and strategy) that writes the answer."""
    providers: dict[str, ProviderSpec] = Field(default_factory=dict)
    """New OpenAI-compatible endpoints, or settings for built-in ones, by provider name."""
    rate_limits: dict[str, RateLimitSpec] = Field(default_factory=dict)
    """One model's own limits, keyed `"provider:model"`."""

    @model_validator(mode="after")
    def _requirements_reachable(self) -> Recipe:
        """A required member behind a `stop_when` may be skipped with its layer: refused."""
        expanded = [layer for layer in self.layers for _ in range(layer.repeat)]
        stopping: int | None = None  # the first layer (1-based, repeats counted) that may stop
        for number, layer in enumerate(expanded, 1):
            required = [m.model for m in layer.models if not isinstance(m, str) and m.required]
            if stopping is not None and required:
                raise ValueError(
                    f"layer {number}'s {required[0]} is required, but layer {stopping} has "
                    f'stop_when = "agree", which skips the layers after it when its answers '
                    f"agree — move the required model to layer {stopping} or before it, or "
                    f"drop stop_when"
                )
            if layer.stop_when is not None and stopping is None:
                stopping = number
        return self
