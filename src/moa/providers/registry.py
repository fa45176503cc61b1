"""Where `provider:model` names are resolved: one table, no if/elif chain."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

from moa import plugins
from moa.errors import ConfigError, MissingAPIKeyError, UnknownProviderError
from moa.policies.ratelimit import Limits, RateLimit
from moa.policies.retry import RetryPolicy
from moa.providers.base import BatchClient, Capabilities, Provider
from moa.providers.builtin import BUILTIN_PROVIDERS, ProviderConfig

__all__ = [
    "BUILTIN_PROVIDERS",
    "ProviderConfig",
    "Registry",
    "base_url_variable",
    "split_model_ref",
]


def base_url_variable(provider: str) -> str:
    """The environment variable that moves a provider's endpoint (`MOA_OLLAMA_BASE_URL`)."""
    return f"MOA_{provider.upper()}_BASE_URL"


def local_concurrency() -> int:
    from moa.providers.local.batch import MAX_SEQUENCES, batching_enabled

    return 2 * MAX_SEQUENCES if batching_enabled() else 1


def _local_factory() -> Provider:
    from moa.providers.local.provider import LocalProvider

    return LocalProvider()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def split_model_ref(ref: str) -> tuple[str, str]:
    """`together:meta-llama/X` → ("together", "meta-llama/X"); only the first colon splits."""
    provider, sep, model = ref.partition(":")
    if not sep or not provider or not model:
        raise ConfigError(
            f"model {ref!r} must be written 'provider:model', e.g. 'local:smollm2' or "
            f"'together:meta-llama/Llama-3.3-70B-Instruct-Turbo'"
        )
    return provider, model


class Registry:
    """Resolves model references to providers, creating one shared client per provider."""

    def __init__(
        self,
        providers: Mapping[str, ProviderConfig] | None = None,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._configs: dict[str, ProviderConfig] = dict(BUILTIN_PROVIDERS)
        self._configs.update(providers or {})
        self._factories: dict[str, Callable[[], Provider]] = {"local": _local_factory}
        self._instances: dict[str, Provider] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._env = env if env is not None else os.environ
        # Limits are per process, shared by every run that uses this registry.
        self.limits = Limits({name: c.rate_limit for name, c in self._configs.items()})
        # Embedded calls queue here, before their timeout starts, rather than on the llama
        # thread where they would time out: one at a time, or with batching as many as two
        # models' batches hold (the `local` recipe's layer: 5 calls to each of two models).
        self.limits.configure("local", RateLimit(max_concurrency=local_concurrency()))

    def add(self, config: ProviderConfig) -> None:
        if self._configs.get(config.name) == config:
            return  # registered already: keep its client and its rate-limit state
        self._configs[config.name] = config
        self._instances.pop(config.name, None)
        self.limits.configure(config.name, config.rate_limit)

    def config(self, name: str) -> ProviderConfig | None:
        return self._configs.get(name)

    def base_url(self, name: str) -> str | None:
        """Where OpenAI-compatible provider `name` is called (its variable's value, if set)."""
        config = self._configs.get(name)
        if config is None:
            return None
        return self._env.get(base_url_variable(name), config.base_url)

    def has_key(self, name: str) -> bool:
        """Whether provider `name`'s key variable is set (true for one that needs no key)."""
        config = self._configs.get(name)
        return (
            config is None or config.api_key_env is None or bool(self._env.get(config.api_key_env))
        )

    def capabilities(self, name: str) -> Capabilities:
        """What provider `name` declares (without creating its client or loading a model);
        a plugin's instance may declare its own as `capabilities`."""
        if name == "local" and name in self._factories:
            from moa.providers.local.provider import LOCAL_CAPABILITIES

            return LOCAL_CAPABILITIES
        config = self._configs.get(name)
        if config is not None:
            return config.capabilities
        if name not in self._factories:
            return Capabilities()
        declared = getattr(self.provider(name), "capabilities", None)
        return declared if isinstance(declared, Capabilities) else Capabilities()

    def retry_policy(self, name: str) -> RetryPolicy | None:
        config = self._configs.get(name)
        return config.retry if config is not None else None

    def add_factory(self, name: str, factory: Callable[[], Provider]) -> None:
        """Register a provider that is not OpenAI-compatible (a plugin, a test double)."""
        self._factories[name] = factory
        self._instances.pop(name, None)

    @property
    def names(self) -> list[str]:
        return sorted({*self._configs, *self._factories, *plugins.installed(plugins.PROVIDERS)})

    def _plugin(self, name: str) -> Callable[[], Provider] | None:
        """An installed package's provider (entry point group `moa.providers`); looked up only
        for names moa does not know, so a plugin cannot shadow a built-in provider."""
        entry = plugins.installed(plugins.PROVIDERS).get(name)
        if entry is None:
            return None
        factory: Callable[[], Provider] = entry.load()
        self._factories[name] = factory
        return factory

    def provider(self, name: str) -> Provider:
        loop = _running_loop()
        if loop is not None:
            if self._loop is not None and loop is not self._loop:
                # Clients belong to the event loop they first ran on: a new loop gets new
                # ones (the old loop's are unusable here, and went with it).
                self._instances = {}
            self._loop = loop
        if name in self._instances:
            return self._instances[name]
        if name in self._factories:
            instance = self._factories[name]()
        elif name in self._configs:
            instance = self._openai_compatible(self._configs[name])
        elif factory := self._plugin(name):
            instance = factory()
        else:
            raise UnknownProviderError(name, self.names)
        self._instances[name] = instance
        return instance

    def resolve(self, ref: str) -> tuple[Provider, str]:
        """`provider:model` → (provider, model name); fails now if a key or extra is missing."""
        name, model = split_model_ref(ref)
        provider = self.provider(name)
        check = getattr(provider, "check", None)
        if callable(check):
            check(model)
        return provider, model

    def _openai_compatible(self, config: ProviderConfig) -> Provider:
        base_url = self._env.get(base_url_variable(config.name), config.base_url)
        if config.api_key_env is None:
            api_key = "not-needed"
        else:
            api_key = self._env.get(config.api_key_env, "")
            if not api_key:
                raise MissingAPIKeyError(config.name, config.api_key_env)
        # Imported here: the SDK costs ~0.8 s to import and the local recipe never needs it.
        from moa.providers.openai.provider import OpenAICompatibleProvider

        return OpenAICompatibleProvider(
            config.name,
            base_url=base_url,
            api_key=api_key,
            api_key_env=config.api_key_env,
            capabilities=config.capabilities,
        )

    def batch_client(self, name: str) -> BatchClient:
        """Provider `name`'s Batch API (an OpenAI-compatible endpoint's, same key)."""
        from moa.providers.openai.batches import OpenAIBatchClient
        from moa.providers.openai.provider import OpenAICompatibleProvider

        provider = self.provider(name)
        if not isinstance(provider, OpenAICompatibleProvider):
            raise ConfigError(
                f"provider {name!r} is not an OpenAI-compatible API, so moa cannot send it "
                f"Batch API jobs: run without --batch-api"
            )
        return OpenAIBatchClient(provider, self.retry_policy(name))

    async def aclose(self) -> None:
        instances, self._instances = self._instances, {}
        for instance in instances.values():
            await instance.aclose()
