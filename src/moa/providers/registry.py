"""Where `provider:model` names are resolved: one table, no if/elif chain."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from moa import plugins
from moa.errors import ConfigError, MissingAPIKeyError, UnknownProviderError
from moa.policies.ratelimit import Limits, RateLimit
from moa.policies.retry import RetryPolicy
from moa.providers.base import BatchAPI, Capabilities, Provider

if TYPE_CHECKING:
    from moa.providers.openai.batches import BatchClient


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """An OpenAI-compatible endpoint. `api_key_env=None` means no key is needed (local servers)."""

    name: str
    base_url: str
    api_key_env: str | None = None
    timeout_s: float | None = None  # per call; None: the recipe's (a model's own wins over both)
    capabilities: Capabilities = field(default_factory=Capabilities)
    # No request rate by default: the limiter learns it from the first 429 (see ratelimit.py).
    rate_limit: RateLimit = field(default_factory=lambda: RateLimit(max_concurrency=16))
    retry: RetryPolicy | None = None  # None: the recipe's policy


MB = 1024 * 1024

# What each hosted API takes, from its docs (a recipe's `[providers.NAME]` may say otherwise).
# Tools and JSON schemas are per model on every one of them: a model that cannot returns the
# provider's own 400, which moa passes on. Where the docs were unclear, the value is False:
# a request refused by moa is better than a field silently dropped upstream.
BUILTIN_PROVIDERS: dict[str, ProviderConfig] = {
    c.name: c
    for c in (
        # continuation (staircase streaming) per provider: "none" unless the API documents
        # that a trailing assistant message is continued rather than answered.
        ProviderConfig(
            "together",
            "https://api.together.xyz/v1",
            "TOGETHER_API_KEY",
            capabilities=Capabilities(
                tools=True,  # function calling on its tool-capable models
                json_schema=True,  # response_format json_schema ("JSON mode" docs)
                logprobs=False,  # its `logprobs` is an integer 0-20, not OpenAI's boolean
                n=True,  # documented `n`
                top_k=True,  # a documented sampling parameter of its chat API
                # its chat API answers after a trailing assistant message; no continue flag
                continuation="none",
                # Batch API docs: 50,000 requests and 100 MB a file, up to 50% off
                batch_api=BatchAPI(50_000, 100 * MB, 0.5),
            ),
        ),
        ProviderConfig(
            "openai",
            "https://api.openai.com/v1",
            "OPENAI_API_KEY",
            # The reference API: every field is its own.
            # continuation "none": no assistant prefill; a trailing assistant turn is answered.
            capabilities=Capabilities(
                tools=True,
                json_schema=True,
                logprobs=True,
                n=True,
                continuation="none",
                system_turns=True,  # system and developer messages anywhere in `messages`
                # Batch API reference: 50,000 requests and 200 MB a file, 50% off, 24 h
                batch_api=BatchAPI(50_000, 200 * MB, 0.5),
            ),
        ),
        ProviderConfig(
            "groq",
            "https://api.groq.com/openai/v1",
            "GROQ_API_KEY",
            capabilities=Capabilities(
                tools=True,  # tool use on most of its models
                json_schema=True,  # structured outputs on some models (others: its 400)
                logprobs=False,  # "logprobs, top_logprobs … result in a 400" (OpenAI compat page)
                n=False,  # "If N is supplied, it must be equal to 1"
                continuation="none",  # documents no prefill / continue for its chat endpoint
                # its Batch API takes OpenAI's files (50,000 lines, 200 MB), at 50% off
                batch_api=BatchAPI(50_000, 200 * MB, 0.5),
            ),
        ),
        ProviderConfig(
            "fireworks",
            "https://api.fireworks.ai/inference/v1",
            "FIREWORKS_API_KEY",
            capabilities=Capabilities(
                tools=True,  # function calling on its tool-capable models
                json_schema=True,  # response_format json_schema (grammar-based)
                logprobs=False,  # unsure its chat endpoint returns OpenAI's shape: not assumed
                n=True,
                top_k=True,  # a documented sampling parameter of its chat API
                # no continue flag documented for chat (its raw completions API would do it,
                # but moa speaks chat only)
                continuation="none",
            ),
        ),
        ProviderConfig(
            "openrouter",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
            capabilities=Capabilities(
                tools=True,  # routed to providers that support tools
                json_schema=True,  # structured outputs, on the models that support them
                logprobs=False,  # passed through only by some providers: not assumed
                n=False,  # not supported by its API
                top_k=True,  # a documented sampling parameter of its chat API
                # prefill works for some upstreams (Anthropic's) and not others, chosen per
                # request by its router: not something moa can rely on
                continuation="none",
                # OpenRouter's batch limits are 5,000 requests / 200 MB a file; its discount
                # depends on the routed upstream, so none is assumed (a recipe may set one)
                batch_api=BatchAPI(5_000, 200 * MB, 0.0),
            ),
        ),
        # No client cap: Ollama queues requests itself (OLLAMA_NUM_PARALLEL, OLLAMA_MAX_QUEUE),
        # and a cap below a layer's width would only add latency. Its OpenAI-compatible API
        # takes tools and json_schema formats (per model); logprobs not assumed. continuation
        # "assistant": Ollama continues a final assistant message (its maintainers,
        # ollama/ollama#6778), and /v1 is translated into the same chat request (not tried here
        # against a real Ollama: a recipe may declare "none" if a version answers it instead).
        ProviderConfig(
            "ollama",
            "http://localhost:11434/v1",
            rate_limit=RateLimit(),
            capabilities=Capabilities(tools=True, json_schema=True, continuation="assistant"),
        ),
    )
}


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
        base_url = self._env.get(f"MOA_{config.name.upper()}_BASE_URL", config.base_url)
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
        from moa.providers.openai.batches import BatchClient
        from moa.providers.openai.provider import OpenAICompatibleProvider

        provider = self.provider(name)
        if not isinstance(provider, OpenAICompatibleProvider):
            raise ConfigError(
                f"provider {name!r} is not an OpenAI-compatible API, so moa cannot send it "
                f"Batch API jobs: run without --batch-api"
            )
        return BatchClient(provider, self.retry_policy(name))

    async def aclose(self) -> None:
        instances, self._instances = self._instances, {}
        for instance in instances.values():
            await instance.aclose()
