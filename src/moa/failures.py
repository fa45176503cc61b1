"""How each of moa's errors looks at every edge, in one table keyed by error class.

A row gives the HTTP face (status, OpenAI's error `type`, `code` and `param`), the typed
`failure_reason` a client can act on, the command line's exit code, its `--json` error type and
the hint it adds. `classify` resolves an error along its class's MRO, so a subclass without a
row of its own takes its parent's. The wire `code` and the `reason` are separate columns: a layer
whose every proposer failed is `layer_failed` on the wire and `all_proposers_failed` as a reason.

`python -m moa.failures --markdown cli|http` prints the tables the docs hold (a test keeps them
equal).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from moa.errors import (
    AggregatorFailedError,
    BudgetExceededError,
    ConfigError,
    DegradedRunError,
    InputError,
    LayerFailedError,
    MoAError,
    ProviderError,
    UnpricedModelError,
    UnsupportedFieldError,
    UpstreamTimeoutError,
)

FROM_KIND = "from kind"  # a ProviderError's reason is its typed `kind` (timeout, rate_limited, …)
TRACE_HINT = "--json shows the trace"
TIMEOUT_HINT = "--timeout sets the recipe's timeout_s"


@dataclass(frozen=True)
class Row:
    code: str | None  # the HTTP error body's `code`
    reason: str  # the `moa.failure_reason` (FROM_KIND: the error's `kind`)
    status: int
    exit: int
    type: str = "server_error"  # the HTTP error body's `type`
    param: str | None = None  # the body's `param`; an error's own `param` (InputError's) wins
    json: str | None = None  # `moa ask --json`'s error type, for a run that failed
    hint: str | None = None  # what the command line adds to the message
    http_hint: str | None = None  # what the server adds to the message

    def failure_reason(self, error: BaseException) -> str:
        return str(getattr(error, "kind", "error")) if self.reason == FROM_KIND else self.reason


_BAD = "invalid_request_error"

# Parents before children, as the docs list them; `classify` walks the MRO, so order is for reading.
TABLE: dict[type[MoAError], Row] = {
    MoAError: Row("run_failed", "internal", 502, 1, json="run_failed"),
    ConfigError: Row("moa_config_error", "config", 500, 2),
    InputError: Row(None, "invalid_request", 400, 2, type=_BAD),
    UnsupportedFieldError: Row(None, "unsupported_field", 400, 2, type=_BAD),
    UnpricedModelError: Row(
        "price_unknown", "price_unknown", 400, 2, type=_BAD, param="moa_max_cost_usd"
    ),
    BudgetExceededError: Row(
        "budget_exceeded", "budget_exceeded", 400, 1, _BAD, "moa_max_cost_usd", "run_failed"
    ),
    DegradedRunError: Row("degraded", "degraded", 502, 3, json="degraded"),
    LayerFailedError: Row(
        "layer_failed", "all_proposers_failed", 502, 1, json="layer_failed", hint=TRACE_HINT
    ),
    AggregatorFailedError: Row(
        "aggregator_failed",
        "aggregator_failed",
        502,
        1,
        json="aggregator_failed",
        hint=TRACE_HINT,
        http_hint='send "moa_trace": true to get the trace with the error',
    ),
    ProviderError: Row("upstream_failed", FROM_KIND, 502, 1, json="run_failed"),
    UpstreamTimeoutError: Row(
        "upstream_failed", FROM_KIND, 502, 1, json="run_failed", hint=TIMEOUT_HINT
    ),
}


def classify(error: BaseException) -> Row:
    """The row of `error`'s nearest class that has one (anything not moa's: MoAError's)."""
    return row_of(type(error))


def row_of(cls: type[BaseException]) -> Row:
    for base in cls.__mro__:
        row = TABLE.get(base)
        if row is not None:
            return row
    return TABLE[MoAError]


def _cell(value: object) -> str:
    return "—" if value is None else f"`{value}`"


def markdown(face: str) -> str:
    """The table of one face, `cli` or `http`, as the docs show it."""
    if face == "cli":
        lines = ["| error | exit code | `--json` error type | hint |", "|---|---|---|---|"]
        for cls, row in TABLE.items():
            cells = [_cell(row.exit), _cell(row.json), _cell(row.hint)]
            lines.append(f"| `{cls.__name__}` | {' | '.join(cells)} |")
    elif face == "http":
        lines = [
            "| error | status | `type` | `code` | `param` | `failure_reason` |",
            "|---|---|---|---|---|---|",
        ]
        for cls, row in TABLE.items():
            reason = "the call's `kind`" if row.reason == FROM_KIND else f"`{row.reason}`"
            own = getattr(cls, "param", None)  # InputError's: the request field at fault
            param = f"the field at fault (`{own}` by default)" if own else _cell(row.param)
            cells = [_cell(row.type), _cell(row.code), param, reason]
            lines.append(f"| `{cls.__name__}` | `{row.status}` | {' | '.join(cells)} |")
    else:
        raise ValueError(f"no table for {face!r}: cli or http")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m moa.failures")
    parser.add_argument("--markdown", choices=["cli", "http"], required=True)
    print(markdown(parser.parse_args(argv).markdown), end="")


if __name__ == "__main__":
    main()
