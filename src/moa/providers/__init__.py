"""Providers: the protocol, the OpenAI-compatible adapter, the local model, the registry."""

from moa.providers.base import Provider
from moa.providers.registry import BUILTIN_PROVIDERS, ProviderConfig, Registry, split_model_ref

__all__ = ["BUILTIN_PROVIDERS", "Provider", "ProviderConfig", "Registry", "split_model_ref"]
