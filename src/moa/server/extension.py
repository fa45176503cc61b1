"""The `moa` member of a response: what the run cost and which members failed, and why.

    "moa": {"cost_usd": 0.0123,            # null: cost unknown (a model without a price)
            "failed_models": [{"model": "together:…", "role": "proposer", "layer": 1,
                               "index": 0, "reason": "rate_limited", "message": "…"}],
            "failure_reason": "all_proposers_failed",   # error responses only
            "panel_convened": false}   # invocation = "auto" only: did the aggregator convene

`usage` keeps OpenAI's fields only; cost lives here (OpenRouter Fusion reports the same as
`failedModels` / `failureReason`).
"""

from __future__ import annotations

from typing import Any

from moa.errors import MoAError
from moa.server.failures import failed_models, failure_reason
from moa.trace import Result


def extension(result: Result) -> dict[str, Any]:
    data = {"cost_usd": result.cost_usd, "failed_models": failed_models(result)}
    if result.panel_convened is not None:  # a recipe with invocation = "auto"
        data["panel_convened"] = result.panel_convened
    return data


def failure_extension(exc: MoAError) -> dict[str, Any]:
    """For an error response: why the run failed, and what it had spent and lost by then."""
    result = getattr(exc, "result", None)
    data: dict[str, Any] = {"failure_reason": failure_reason(exc)}
    if isinstance(result, Result):
        data.update(extension(result))
    return data
