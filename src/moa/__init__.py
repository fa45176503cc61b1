"""moa — Mixture-of-Agents: several LLMs propose, in layers; an aggregator streams the answer.

import moa
print(moa.run("What is the meaning of life?").text)        # offline, embedded model

from moa import MoA, ProposalLayer, Aggregator
mixture = MoA(
    ProposalLayer("together:Qwen/Qwen2.5-72B-Instruct-Turbo", "groq:llama-3.3-70b-versatile"),
    ProposalLayer("together:Qwen/Qwen2.5-72B-Instruct-Turbo", "groq:llama-3.3-70b-versatile"),
    Aggregator("openai:gpt-4o"),
)
"""

# The public names load on first use (PEP 562): this file runs before any `moa.*` submodule,
# so eager imports here would make `moa --help` pay for the engine, pydantic and sqlite3.
# Type checkers read the TYPE_CHECKING block, so `from moa import MoA` stays fully typed.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moa.api import arun, run, stream
    from moa.call.agent import Agent
    from moa.call.prompts import AGGREGATE_AND_SYNTHESIZE, inject_references
    from moa.engine.aggregator import Aggregator
    from moa.engine.layer import ProposalLayer
    from moa.engine.mixture import MoA
    from moa.errors import (
        AggregatorFailedError,
        ConfigError,
        DegradedRunError,
        InputError,
        LayerFailedError,
        MissingAPIKeyError,
        MissingExtraError,
        MoAError,
        ProviderError,
        RecipeError,
        RunError,
        UnknownProviderError,
        UnsupportedFieldError,
    )
    from moa.events import (
        AggregatorStarted,
        Done,
        Event,
        ProposalDelta,
        ProposalFailed,
        ProposalFinished,
        ProposalStarted,
        Token,
        ToolCallDelta,
    )
    from moa.policies.retry import RetryPolicy
    from moa.providers import Provider, ProviderConfig, Registry
    from moa.trace import CallRecord, Choice, Result
    from moa.types import Answering, Message, ResponseFormat, Sampling, Tools, Usage

__version__ = "0.1.0"

_SOURCES: dict[str, tuple[str, ...]] = {
    "moa.call.agent": ("Agent",),
    "moa.engine.aggregator": ("Aggregator",),
    "moa.engine.layer": ("ProposalLayer",),
    "moa.api": ("arun", "run", "stream"),
    "moa.engine.mixture": ("MoA",),
    "moa.errors": (
        "AggregatorFailedError",
        "ConfigError",
        "DegradedRunError",
        "InputError",
        "LayerFailedError",
        "MissingAPIKeyError",
        "MissingExtraError",
        "MoAError",
        "ProviderError",
        "RecipeError",
        "RunError",
        "UnknownProviderError",
        "UnsupportedFieldError",
    ),
    "moa.events": (
        "AggregatorStarted",
        "Done",
        "Event",
        "ProposalDelta",
        "ProposalFailed",
        "ProposalFinished",
        "ProposalStarted",
        "Token",
        "ToolCallDelta",
    ),
    "moa.call.prompts": ("AGGREGATE_AND_SYNTHESIZE", "inject_references"),
    "moa.providers": ("Provider", "ProviderConfig", "Registry"),
    "moa.policies.retry": ("RetryPolicy",),
    "moa.trace": ("CallRecord", "Choice", "Result"),
    "moa.types": ("Answering", "Message", "ResponseFormat", "Sampling", "Tools", "Usage"),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = [
    "AGGREGATE_AND_SYNTHESIZE",
    "Agent",
    "Aggregator",
    "AggregatorFailedError",
    "AggregatorStarted",
    "Answering",
    "CallRecord",
    "Choice",
    "ConfigError",
    "DegradedRunError",
    "Done",
    "Event",
    "InputError",
    "LayerFailedError",
    "Message",
    "MissingAPIKeyError",
    "MissingExtraError",
    "MoA",
    "MoAError",
    "ProposalDelta",
    "ProposalFailed",
    "ProposalFinished",
    "ProposalLayer",
    "ProposalStarted",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "RecipeError",
    "Registry",
    "ResponseFormat",
    "Result",
    "RetryPolicy",
    "RunError",
    "Sampling",
    "Token",
    "ToolCallDelta",
    "Tools",
    "UnknownProviderError",
    "UnsupportedFieldError",
    "Usage",
    "arun",
    "inject_references",
    "run",
    "stream",
]


if not TYPE_CHECKING:  # hidden from type checkers, so that `moa.Moa` stays a type error

    def __getattr__(name: str) -> Any:
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module 'moa' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted([*globals(), *_MODULE_OF])
