"""Providers: the one protocol (`base`), the registry of `provider:model` names
(`registry`), the OpenAI-compatible adapter (`openai/`) and the embedded model (`local/`).

May import the policies (rate limits, retry) and the vocabulary at the package root; never one
call, the strategies or the engine that use them.
"""

from moa.providers.base import Provider
from moa.providers.registry import BUILTIN_PROVIDERS, ProviderConfig, Registry, split_model_ref

__all__ = ["BUILTIN_PROVIDERS", "Provider", "ProviderConfig", "Registry", "split_model_ref"]
