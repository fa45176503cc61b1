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

from moa.agents import Agent, Aggregator, ProposalLayer
from moa.api import arun, run, stream
from moa.engine import MoA
from moa.errors import (
    AggregatorFailedError,
    ConfigError,
    InputError,
    LayerFailedError,
    MissingAPIKeyError,
    MissingExtraError,
    MoAError,
    ProviderError,
    RecipeError,
    RunError,
    UnknownProviderError,
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
)
from moa.prompts import AGGREGATE_AND_SYNTHESIZE, inject_references
from moa.providers import Provider, ProviderConfig, Registry
from moa.retry import RetryPolicy
from moa.trace import CallRecord, Result
from moa.types import Message, Sampling, Usage

__version__ = "0.1.0"

__all__ = [
    "AGGREGATE_AND_SYNTHESIZE",
    "Agent",
    "Aggregator",
    "AggregatorFailedError",
    "AggregatorStarted",
    "CallRecord",
    "ConfigError",
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
    "Result",
    "RetryPolicy",
    "RunError",
    "Sampling",
    "Token",
    "UnknownProviderError",
    "Usage",
    "arun",
    "inject_references",
    "run",
    "stream",
]
