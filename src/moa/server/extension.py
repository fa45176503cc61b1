"""The `moa` member of a response: what the run cost and which members failed, and why.

    "moa": {"cost_usd": 0.0123,            # null: cost unknown (a model without a price)
            "failed_models": [{"model": "together:…", "role": "proposer", "layer": 1,
                               "index": 0, "reason": "rate_limited", "message": "…",
                               "missing": "failed"}],
            "degraded": true, "answered": 3, "asked": 4,   # every response, also streamed
            "fallback": null,                  # the fallback aggregator that answered
            "failure_reason": "all_proposers_failed",   # error responses only
            "panel_convened": false}   # invocation = "auto" only: did the aggregator convene

`missing` says why the member gave nothing to the answer (moa.trace.CallRecord.missing):
failed, timeout, deadline / quorum (its layer moved on), staircase (the answer ended first).

`usage` keeps OpenAI's fields only; cost lives here (OpenRouter Fusion reports the same as
`failedModels` / `failureReason`).
"""

from __future__ import annotations

from typing import Any

from moa.errors import MoAError
from moa.server.failures import failed_models, failure_reason
from moa.trace import Result


def extension(result: Result) -> dict[str, Any]:
    degradation = result.degradation
    data: dict[str, Any] = {
        "cost_usd": result.cost_usd,
        "failed_models": failed_models(result),
        "degraded": degradation.degraded,
        "answered": degradation.answered,
        "asked": degradation.asked,
        "fallback": degradation.fallback,
    }
    if result.panel_convened is not None:  # a recipe with invocation = "auto"
        data["panel_convened"] = result.panel_convened
    return data


def degraded_header(result: Result | None) -> dict[str, str]:
    """`X-MoA-Degraded` for a response whose headers go out after the run (a whole body):
    `false`, or `true; answered=3; asked=5` (a stream's headers leave before the run ends:
    its `moa` extension says it instead)."""
    if result is None:
        return {}
    degradation = result.degradation
    if not degradation.degraded:
        return {DEGRADED_HEADER: "false"}
    value = f"true; answered={degradation.answered}; asked={degradation.asked}"
    return {DEGRADED_HEADER: value}


DEGRADED_HEADER = "X-MoA-Degraded"


def failure_extension(exc: MoAError) -> dict[str, Any]:
    """For an error response: why the run failed, and what it had spent and lost by then."""
    result = getattr(exc, "result", None)
    data: dict[str, Any] = {"failure_reason": failure_reason(exc)}
    if isinstance(result, Result):
        data.update(extension(result))
    return data
