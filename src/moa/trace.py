"""What a run did: one record per upstream call, the final answer, and the totals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from moa.types import Usage

CallRole = Literal["proposer", "aggregator"]
CallStatus = Literal["ok", "failed", "cancelled"]


@dataclass(slots=True)
class CallRecord:
    layer: int  # 1-based; the aggregator's layer is the last one
    index: int  # position of the model within its layer
    model: str  # `provider:model`
    role: CallRole
    status: CallStatus = "ok"
    output: str = ""
    error: str | None = None
    latency_s: float = 0.0
    usage: Usage = field(default_factory=Usage)
    attempts: int = 1
    finish_reason: str | None = None  # the upstream's: "stop", "length" (hit max_tokens), …

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_tokens"] = self.usage.input_tokens
        data["output_tokens"] = self.usage.output_tokens
        del data["usage"]
        return data


@dataclass(slots=True)
class Result:
    text: str = ""
    calls: list[CallRecord] = field(default_factory=list)
    latency_s: float = 0.0
    aggregator_model: str | None = None

    @property
    def usage(self) -> Usage:
        total = Usage()
        for call in self.calls:
            total = total + call.usage
        return total

    def proposals(self, layer: int | None = None) -> list[CallRecord]:
        """Proposer calls, of one layer or of all."""
        return [
            c for c in self.calls if c.role == "proposer" and (layer is None or c.layer == layer)
        ]

    @property
    def failures(self) -> list[CallRecord]:
        return [c for c in self.calls if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        usage = self.usage
        return {
            "text": self.text,
            "aggregator_model": self.aggregator_model,
            "latency_s": round(self.latency_s, 4),
            "usage": {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "total_tokens": usage.total_tokens,
            },
            "calls": [c.to_dict() for c in self.calls],
        }
