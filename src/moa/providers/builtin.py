"""The built-in providers: one `ProviderConfig` each, the only way a provider is declared (a
recipe's `[providers.NAME]` builds the same, over the built-in of that name if there is one)."""

from __future__ import annotations

from dataclasses import dataclass, field

from moa.policies.ratelimit import RateLimit
from moa.policies.retry import RetryPolicy
from moa.providers.base import BatchAPI, Capabilities


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
        # Claude's OpenAI SDK compatibility layer (its docs: "OpenAI SDK compatibility"):
        # most unsupported fields are silently ignored, so only what it says works is declared.
        ProviderConfig(
            "anthropic",
            "https://api.anthropic.com/v1",
            "ANTHROPIC_API_KEY",
            capabilities=Capabilities(
                tools=True,  # tools supported; `strict` ignored (schema not guaranteed)
                json_schema=False,  # "response_format: Ignored"
                logprobs=False,  # "logprobs: Ignored"
                n=False,  # "n: Must be exactly 1"
                seed=False,  # "seed: Ignored"
                stream_usage=True,  # "stream_options: Fully supported"
                # no assistant prefill documented for this layer (its native API has one)
                continuation="none",
                # its Message Batches API is not OpenAI's /v1/batches format
            ),
        ),
        # Gemini's OpenAI compatibility (beta): chat completions, function calling, structured
        # output (`response_format` with a schema, `parse`), and batches through the OpenAI SDK
        # (Google's announcement of September 2025) at the Batch API's 50% off.
        ProviderConfig(
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta/openai",
            "GEMINI_API_KEY",
            capabilities=Capabilities(
                tools=True,
                json_schema=True,
                logprobs=False,  # not documented for this layer
                n=False,  # not documented for this layer
                seed=False,  # not documented for this layer
                stream_usage=False,  # not documented for this layer
                continuation="none",
                # Batch API docs: input files up to 2 GB, 50% off, 24 h target; no request
                # count is given, so moa splits at OpenAI's 50,000
                batch_api=BatchAPI(50_000, 2048 * MB, 0.5),
            ),
        ),
        ProviderConfig(
            "deepseek",
            "https://api.deepseek.com/v1",  # its docs: /v1 "for compatibility with OpenAI"
            "DEEPSEEK_API_KEY",
            capabilities=Capabilities(
                tools=True,  # function calling
                json_schema=False,  # JSON Output is `json_object` only, no schema
                logprobs=True,  # OpenAI's boolean and `top_logprobs` (not on its reasoner)
                n=False,  # no `n` in its chat API
                seed=False,  # no `seed` in its chat API
                stream_usage=True,  # `stream_options.include_usage`
                # its "chat prefix completion" needs its /beta URL and a `prefix` flag
                continuation="none",
            ),
        ),
        # Mistral's own API (not a compatibility layer) answers 422 "Extra inputs are not
        # permitted" to any field it does not define: `seed` (its own is `random_seed`) and
        # `stream_options` among them; its streams carry usage in the last chunk anyway.
        ProviderConfig(
            "mistral",
            "https://api.mistral.ai/v1",
            "MISTRAL_API_KEY",
            capabilities=Capabilities(
                tools=True,
                json_schema=True,  # response_format json_schema (custom structured outputs)
                logprobs=False,  # no `logprobs` in its chat API
                n=False,  # not assumed
                seed=False,
                stream_usage=False,
                # its `prefix: true` on a final assistant message is its own flag
                continuation="none",
                # its batch API is /v1/batch/jobs, not OpenAI's /v1/batches
            ),
        ),
        ProviderConfig(
            "xai",
            "https://api.x.ai/v1",
            "XAI_API_KEY",
            capabilities=Capabilities(
                tools=True,  # function calling
                json_schema=True,  # structured outputs
                logprobs=False,  # not assumed
                n=False,  # not assumed
                seed=False,  # not assumed
                stream_usage=False,  # not assumed
                continuation="none",
                # its Batch API adds requests to a batch by API call, not OpenAI's files
            ),
        ),
        # Its docs: these fields "will result in a 400 error": frequency_penalty, logit_bias,
        # presence_penalty, parallel_tool_calls, service_tier (moa sends parallel_tool_calls
        # only when a client asks; the 400 is then passed on).
        ProviderConfig(
            "cerebras",
            "https://api.cerebras.ai/v1",
            "CEREBRAS_API_KEY",
            capabilities=Capabilities(
                tools=True,
                json_schema=True,  # structured outputs (json_schema, strict)
                logprobs=False,  # not assumed
                n=False,  # not assumed
                seed=True,  # documented `seed`
                stream_usage=False,  # not assumed
                continuation="none",
            ),
        ),
        ProviderConfig(
            "sambanova",
            "https://api.sambanova.ai/v1",
            "SAMBANOVA_API_KEY",
            capabilities=Capabilities(
                tools=True,  # "Function calling and JSON mode", on some models
                json_schema=False,  # its docs read here show JSON mode, not a schema
                logprobs=False,
                n=False,
                seed=False,
                stream_usage=False,
                continuation="none",
            ),
        ),
        ProviderConfig(
            "deepinfra",
            "https://api.deepinfra.com/v1/openai",
            "DEEPINFRA_API_KEY",
            capabilities=Capabilities(
                tools=True,  # function calling on its tool-capable models
                json_schema=False,  # JSON mode documented; a schema not assumed
                logprobs=False,  # not assumed
                n=False,  # not assumed
                seed=False,  # not assumed
                stream_usage=False,  # not assumed
                continuation="none",
                # Its Batch API (announced June 2026) is "OpenAI-compatible … the workflow is
                # identical", 20% off real-time prices, results within 24 h; it names no
                # per-file limits, so OpenAI's are assumed
                batch_api=BatchAPI(50_000, 200 * MB, 0.2),
            ),
        ),
        # Local servers at their default ports (MOA_<NAME>_BASE_URL moves one), no key (a server
        # started with one: `[providers.NAME] api_key_env = "..."` in the recipe), and no client
        # cap: each queues requests itself, as Ollama does. What a model can do (tools, a chat
        # template) is the server's to say: its own 400 is passed on.
        ProviderConfig(
            "lmstudio",
            "http://localhost:1234/v1",
            rate_limit=RateLimit(),
            capabilities=Capabilities(
                tools=True,  # custom tools on /v1/chat/completions
                json_schema=True,  # structured output (JSON schema)
                seed=False,  # not documented for its OpenAI endpoints
                stream_usage=False,  # not documented
                continuation="none",
            ),
        ),
        # vLLM's `vllm serve` listens on 8000, `moa serve`'s default port too: serve one of them
        # on another (a recipe whose provider is the server itself is refused at startup).
        ProviderConfig(
            "vllm",
            "http://localhost:8000/v1",
            rate_limit=RateLimit(),
            capabilities=Capabilities(
                tools=True,  # "auto" needs --enable-auto-tool-choice and a parser
                json_schema=True,  # structured outputs
                logprobs=True,
                n=True,
                continuation="assistant",  # continue_final_message (moa sends it)
            ),
        ),
        # llama.cpp's `llama-server` (port 8080).
        ProviderConfig(
            "llamacpp",
            "http://localhost:8080/v1",
            rate_limit=RateLimit(),
            capabilities=Capabilities(
                tools=True,  # with its --jinja chat templates
                json_schema=True,  # response_format json_schema, as a grammar
                logprobs=False,  # not assumed
                n=False,  # one choice per request
                stream_usage=False,  # ignored: it sends no usage chunk for it
                continuation="assistant",  # it continues a final assistant message
            ),
        ),
    )
}
