"""Every error moa raises, one small tree.

    MoAError
    ├── ConfigError                 exit 2: fix the command line, the recipe or the environment
    │   ├── InputError              empty prompt, malformed messages
    │   │   └── UnsupportedFieldError   a request field the aggregator's provider cannot honour
    │   ├── RecipeError             unknown recipe, malformed TOML, unknown key or bad value
    │   ├── UnknownProviderError    `foo:model` where no provider `foo` is registered
    │   ├── MissingAPIKeyError      the provider's key variable is unset (raised before any call)
    │   ├── MissingExtraError       an optional dependency is not installed
    │   ├── ModelIntegrityError     an embedded model's file does not have its pinned SHA-256
    │   ├── UnpricedModelError      a budget is set but a model has no known price
    │   ├── OpenServerError         a server would listen beyond loopback with no API key
    │   └── BatchAPIError           `--batch-api`: no Batch API there, a request over its limits
    └── RunError                    exit 1: something failed while answering
        ├── ProviderError           one upstream call failed (status, headers, retry-after)
        │   ├── UpstreamStatusError     an HTTP error status (ContextLengthError: prompt too long)
        │   ├── UpstreamTimeoutError    no answer within the call's timeout
        │   ├── UpstreamConnectionError could not connect, or the connection broke off
        │   ├── MalformedResponseError  a body that is not the API's shape
        │   └── EmptyResponseError      an answer with nothing in it
        ├── LayerFailedError        every proposer of a layer failed
        ├── AggregatorFailedError   the aggregator (and its fallbacks) failed; proposals kept
        ├── BudgetExceededError     the next layer's worst case would pass max_cost_usd
        ├── DegradedRunError        members were lost and the recipe says on_degraded = "fail"
        └── BatchJobError           a Batch API job failed (validation errors, by request)

Errors carry data, never side effects; they become exit codes or HTTP responses only at the
edges (the CLI and the server).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from moa.trace import CallRecord, Result


class MoAError(Exception):
    """Root of every error moa raises on purpose."""


class ConfigError(MoAError):
    """The run cannot start: the command, recipe or environment needs fixing."""


class InputError(ConfigError):
    """The prompt or messages are unusable; `param` is the request field at fault (the server's
    400 names it)."""

    param: str = "messages"

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        if param is not None:
            self.param = param


class UnsupportedFieldError(InputError):
    """The run was asked for something (tools, a response format, logprobs) that the
    aggregator's provider does not declare, or that its strategy cannot give (it may answer
    with a proposal verbatim); refused before any call, never ignored."""

    def __init__(
        self, field: str, model: str, capability: str, *, strategy: str | None = None
    ) -> None:
        self.param = field
        provider = model.partition(":")[0]
        if strategy is not None:
            message = (
                f"{field}: the {strategy!r} strategy may answer with a proposal verbatim, which "
                f"cannot honour it; use a recipe whose strategy synthesizes (e.g. synthesize)"
            )
        else:
            message = (
                f"{field}: the aggregator {model} cannot take it — its provider does not declare "
                f"`{capability}`; use an aggregator whose provider does, or declare "
                f"`{capability} = true` under [providers.{provider}] in the recipe if it can"
            )
        super().__init__(message)


class RecipeError(ConfigError):
    """A recipe could not be found, parsed or validated."""


class UnknownProviderError(ConfigError):
    def __init__(self, provider: str, known: Sequence[str]) -> None:
        self.provider = provider
        super().__init__(
            f"unknown provider {provider!r} — use one of {', '.join(sorted(known))} "
            f"as 'provider:model', or declare [providers.{provider}] with a base_url in the recipe"
        )


class MissingAPIKeyError(ConfigError):
    def __init__(self, provider: str, env_var: str) -> None:
        self.provider = provider
        self.env_var = env_var
        super().__init__(
            f"provider {provider!r} needs an API key: set {env_var} "
            f"(or run offline with `-r local`)"
        )


class MissingExtraError(ConfigError):
    """`editable`: name the install from a checkout (`pip install -e ".[extra]"`), for extras
    whose packages a published moa wheel does not pull in for you."""

    def __init__(self, what: str, extra: str, *, editable: bool = False) -> None:
        self.extra = extra
        command = f'pip install -e ".[{extra}]"' if editable else f"pip install 'moa[{extra}]'"
        super().__init__(f"{what} is not installed — install it with: {command}")


class ModelIntegrityError(ConfigError):
    """An embedded model's file is not the one moa pinned: refused before llama.cpp reads it."""

    def __init__(self, path: str, expected: str, actual: str, fix: str) -> None:
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(
            f"{path}: SHA-256 {actual} does not match the pinned {expected} — refusing to "
            f"load it; {fix}"
        )


class UnpricedModelError(ConfigError):
    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(
            f"a budget is set but {model} has no known price, so its cost cannot be bounded "
            f"— give it `price = {{ input = …, output = … }}` (USD per million tokens) in the "
            f"recipe"
        )


class OpenServerError(ConfigError):
    """A server (`moa serve`, `moa web`, the metrics endpoint with them) would listen on an
    address other machines reach, with no API key: anyone who reaches the port would spend
    the owner's provider keys. Refused before it listens."""

    def __init__(self, command: str, host: str) -> None:
        self.command = command
        self.host = host
        super().__init__(
            f"{command}: refusing to listen on {host} without an API key — pass --api-key KEY "
            f"(or set MOA_API_KEYS), or --no-auth to serve a trusted network open"
        )


class BatchAPIError(ConfigError):
    """`moa batch --batch-api` cannot send a layer as Batch API jobs: the provider offers no
    Batch API (404 on /v1/files), or a request does not fit its limits."""


class RunError(MoAError):
    """A run started but could not produce an answer."""


class ProviderError(RunError):
    """One upstream call failed; the subclass says how (as httpx's exceptions do).

    `status_code` is the HTTP status (None for connection errors, timeouts and bad bodies);
    `retry_after` is the server's requested wait in seconds, when it sent one. Retry decisions
    are made on the type and these fields only, never on the message text. `kind` names the
    failure for traces and clients (`rate_limited`, `timeout`, `context_length`, …).
    """

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        model: str,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.status_code = status_code
        self.headers = dict(headers or {})
        self.retry_after = retry_after
        self.attempts = 1  # set by the retry loop when it gives up
        super().__init__(message)

    @classmethod
    def empty(cls, provider: str, model: str, what: str = "content") -> EmptyResponseError:
        """An answer with nothing in it (and nothing to explain why): not retried."""
        return EmptyResponseError(
            f"{provider}:{model} returned empty {what}", provider=provider, model=model
        )

    @property
    def retryable(self) -> bool:
        return False


class UpstreamStatusError(ProviderError):
    """The upstream answered with an HTTP error status."""

    @property
    def kind(self) -> str:  # type: ignore[override]
        if self.status_code == 429:
            return "rate_limited"
        if self.status_code in (401, 403):
            return "auth"
        if self.status_code is not None and self.status_code >= 500:
            return "upstream_error"
        return "bad_request"

    @property
    def retryable(self) -> bool:
        code = self.status_code
        return code is not None and (code in (408, 409, 429) or code >= 500)


class ContextLengthError(UpstreamStatusError):
    """The model refused the prompt as longer than its context window."""

    kind = "context_length"

    @property
    def retryable(self) -> bool:
        return False  # the caller shrinks the references instead


class UpstreamTimeoutError(ProviderError):
    kind = "timeout"

    @property
    def retryable(self) -> bool:
        return True


class UpstreamConnectionError(ProviderError):
    """Could not connect, or the connection broke off mid-answer."""

    kind = "connection"

    @property
    def retryable(self) -> bool:
        return True


class MalformedResponseError(ProviderError):
    """A body that is not the API's shape: truncated JSON, an HTML page, a missing field."""

    kind = "malformed"


class EmptyResponseError(ProviderError):
    kind = "empty"


class LayerFailedError(RunError):
    def __init__(self, layer: int, failures: Sequence[CallRecord], result: Result) -> None:
        self.layer = layer
        self.failures = list(failures)
        self.result = result
        detail = "; ".join(str(f.error) for f in failures)
        super().__init__(f"every proposer of layer {layer} failed — {detail}")


class AggregatorFailedError(RunError):
    def __init__(self, failures: Sequence[CallRecord], result: Result) -> None:
        self.failures = list(failures)
        self.result = result
        detail = "; ".join(str(f.error) for f in failures)
        super().__init__(
            f"the aggregator failed ({detail}); the proposals are kept in the trace — add "
            f"`fallbacks` to the recipe's [aggregator]"
        )


class BudgetExceededError(RunError):
    """Refused before spending: the next layer could cost more than the run's budget allows.

    `result` holds the calls made so far (and what they cost)."""

    def __init__(
        self,
        *,
        budget_usd: float,
        spent_usd: float,
        worst_case_usd: float,
        stage: str,
        knob: str,
        result: Result | None = None,
    ) -> None:
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd
        self.worst_case_usd = worst_case_usd
        self.stage = stage
        self.result = result
        super().__init__(
            f"budget of ${budget_usd:g} (max_cost_usd) would be exceeded: {stage} could cost up "
            f"to ${worst_case_usd:.6f} after ${spent_usd:.6f} spent — raise {knob}, or lower "
            f"max_tokens (the worst case assumes every call writes max_tokens)"
        )


class DegradedRunError(RunError):
    """The run lost members it asked for (failed, timed out, cut by a deadline or a staircase,
    a fallback aggregator answering) and the recipe says `on_degraded = "fail"`: no answer is
    given. `result` holds the partial trace, whose `degradation` says who was lost and why."""

    def __init__(self, result: Result) -> None:
        self.result = result
        degradation = result.degradation
        lost = ", ".join(f"{c.model} ({c.missing})" for c in degradation.lost)
        super().__init__(
            f"degraded run refused ({degradation.summary()}; lost: {lost}) because the recipe "
            f'says on_degraded = "fail" — raise the timeouts or deadline_s, mark the members '
            f'you cannot do without required = true, or set on_degraded = "answer"'
        )


class BatchJobError(RunError):
    """A Batch API job ended `failed` (its file did not validate): the errors, by request."""
