"""What moa's spans say, in the OpenTelemetry GenAI semantic conventions' words (v1.41, the last
release of semantic-conventions that held them; they have since moved to their own repository):
which switches the user set, and each span's attributes, derived from moa's own trace
(`moa.trace.CallRecord`, `Result`) so the JSON trace and the spans cannot drift apart.

Attributes the conventions do not define are moa's own, under `moa.` (role, layer, cost, cache
hit, why a member was lost). Content (prompts, answers) is written only when the user asks,
through the conventions' own switch; API keys never reach a span.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from moa.trace import AggregatorStep, CallRecord, Result
from moa.types import ChatRequest, Message, Usage

SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"
LATEST = "gen_ai_latest_experimental"  # OTEL_SEMCONV_STABILITY_OPT_IN's value for GenAI
CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# Content on span attributes: the latest conventions' values for it, and the older `true`.
_ON_SPANS = {"SPAN_ONLY", "SPAN_AND_EVENT", "TRUE"}

# moa's provider names where the conventions name the same service differently; any other
# name (together, fireworks, openrouter, local, a recipe's own) is passed as it is, as the
# conventions allow for systems they do not list.
_PROVIDERS = {
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "azure": "azure.ai.openai",
    "bedrock": "aws.bedrock",
}

Attributes = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Conventions:
    """The user's switches, read from the environment when a run starts.

    `latest`: OTEL_SEMCONV_STABILITY_OPT_IN holds `gen_ai_latest_experimental`, so only the
    latest names are written; without it the provider is also written under v1.36's name
    (`gen_ai.system`), for backends that still read that one. `content`: prompts and answers
    go on the spans (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT = SPAN_ONLY,
    SPAN_AND_EVENT, or v1.36's `true`); moa writes no log events, so EVENT_ONLY captures none."""

    latest: bool = False
    content: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Conventions:
        env = os.environ if env is None else env
        opted = {v.strip() for v in env.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",")}
        return cls(LATEST in opted, env.get(CAPTURE, "").strip().upper() in _ON_SPANS)

    def provider(self, name: str) -> Attributes:
        known = _PROVIDERS.get(name, name)
        return {"gen_ai.provider.name": known} | ({} if self.latest else {"gen_ai.system": known})


def request_attributes(
    provider: str,
    request: ChatRequest,
    conventions: Conventions,
    *,
    streamed: bool,
    address: tuple[str, int] | None,
) -> Attributes:
    """What a chat span says from its start (what sampling decisions may read): the
    operation, the provider, the model as the provider names it, the sampling settings."""
    s = request.sampling
    attributes: Attributes = {
        "gen_ai.operation.name": "chat",
        **conventions.provider(provider),
        "gen_ai.request.model": request.model,
        "gen_ai.request.temperature": s.temperature,
        "gen_ai.request.top_p": s.top_p,
        "gen_ai.request.max_tokens": s.max_tokens,
        "gen_ai.request.seed": s.seed,
        "gen_ai.request.stop_sequences": list(s.stop) if s.stop else None,
        "gen_ai.request.stream": streamed or None,
        "gen_ai.output.type": "json" if request.response_format is not None else None,
    }
    if address is not None:
        attributes["server.address"], attributes["server.port"] = address
    if conventions.content:
        attributes["gen_ai.input.messages"] = input_messages(request.messages)
    return _set(attributes)


def call_attributes(
    record: CallRecord,
    step: AggregatorStep | None,
    usage: Usage,
    cost: float | None,
    conventions: Conventions,
) -> Attributes:
    """What a chat span says once its run has ended, from the call's record: its place in the
    mixture, tokens, finish reason, cost, and where they apply: attempts other than one, a
    cache hit, an estimated usage, why it was lost. `step`: the staircase step this call was
    (its own tokens; the record holds the whole answer's)."""
    finish = record.finish_reason if step is None or step.final else None
    # Only what says something: each attribute costs its encoding on every exported span.
    attributes: Attributes = {
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.response.finish_reasons": [finish] if finish else None,
        "moa.role": record.role,
        "moa.layer": record.layer,
        "moa.index": record.index,
        "moa.cost_usd": cost,
        "moa.attempts": record.attempts if record.attempts != 1 else None,
        "moa.cache_hit": (record.ok and record.attempts == 0) or None,
        "moa.usage.estimated": usage.estimated or None,
        "moa.status": None if record.ok else record.status,
        "moa.missing": record.missing,
        "moa.dropped": record.dropped,
        "moa.notes": list(record.notes) or None,
    }
    if step is not None:
        attributes["moa.staircase.prefix_chars"] = step.prefix_chars
        attributes["moa.staircase.final"] = step.final
    if conventions.content and step is None and record.output:
        attributes["gen_ai.output.messages"] = output_messages([(record.output, finish)])
    return _set(attributes)


def run_attributes(result: Result, conventions: Conventions) -> Attributes:
    """What a workflow span says once its run has ended: degraded or not, panel convened or
    not, the cost and the tokens of every call."""
    usage = result.usage
    degradation = result.degradation
    finishes = [c.finish_reason for c in result.choices if c.finish_reason]
    attributes: Attributes = {
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.response.finish_reasons": finishes or None,
        "moa.degraded": degradation.degraded,
        "moa.answered": degradation.answered,
        "moa.asked": degradation.asked,
        "moa.lost": [f"{c.model} ({c.missing})" for c in degradation.lost] or None,
        "moa.fallback": degradation.fallback,
        "moa.panel_convened": result.panel_convened,
        "moa.cost_usd": result.cost_usd,
        "moa.cost_known_usd": result.known_cost_usd,
        "moa.calls": len(result.calls),
        "moa.aggregator_model": result.aggregator_model,
        "moa.stopped_early": result.stopped_early,
    }
    if conventions.content and result.choices:
        answers = [(c.text, c.finish_reason) for c in result.choices]
        attributes["gen_ai.output.messages"] = output_messages(answers)
    return _set(attributes)


def input_messages(messages: Sequence[Message]) -> str:
    """The conversation in the conventions' input-messages shape, as a JSON string (span
    attributes hold no structures yet)."""
    shaped = []
    for message in messages:
        parts: list[dict[str, Any]] = []
        if message.get("content"):
            kind = "tool_call_response" if message["role"] == "tool" else "text"
            key = "response" if kind == "tool_call_response" else "content"
            part: dict[str, Any] = {"type": kind, key: message["content"]}
            if kind == "tool_call_response":
                part["id"] = message.get("tool_call_id")
            parts.append(part)
        for call in message.get("tool_calls", []):
            function = call.get("function", {})
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments"),
                }
            )
        shaped.append({"role": message["role"], "parts": parts})
    return json.dumps(shaped, ensure_ascii=False)


def output_messages(answers: Sequence[tuple[str, str | None]]) -> str:
    return json.dumps(
        [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": text}],
                "finish_reason": finish or "stop",
            }
            for text, finish in answers
        ],
        ensure_ascii=False,
    )


def _set(attributes: Attributes) -> Attributes:
    """Only the attributes that have a value (OpenTelemetry refuses None)."""
    return {k: v for k, v in attributes.items() if v is not None}
