"""Why a call or a run failed, as a short typed reason a client can act on.

Like OpenRouter Fusion's `failureReason`: `rate_limited` (back off), `timeout`, `connection`
(retry later), `context_length` (shorten the conversation), `auth` (the server's key),
`malformed` / `empty` (the upstream answered badly), `cancelled` (a layer moved on without
the call), and for a whole run `all_proposers_failed`, `aggregator_failed`,
`budget_exceeded`, `degraded` (members lost under `on_degraded = "fail"`); a refused
request's, `unsupported_field` (the recipe cannot give what it asks), `invalid_request`,
`price_unknown` or `config` (the server's recipe or environment). Derived from the error's
type and its typed `kind` (moa.failures' table), never its text.
"""

from __future__ import annotations

from typing import Any

from moa.failures import classify
from moa.trace import CallRecord, Result


def failure_reason(error: BaseException) -> str:
    """The reason of a failed run, or of one failed call (its error's typed `kind`)."""
    return classify(error).failure_reason(error)


def failed_models(result: Result | None) -> list[dict[str, Any]]:
    """Each call of the run that gave no answer: which model, where, and why."""
    if result is None:
        return []
    return [_failure(call) for call in result.calls if not call.ok]


def _failure(call: CallRecord) -> dict[str, Any]:
    return {
        "model": call.model,
        "role": call.role,
        "layer": call.layer,
        "index": call.index,
        "reason": call.error_kind or ("cancelled" if call.status == "cancelled" else "internal"),
        "message": call.error,
        "missing": call.missing,
    }
