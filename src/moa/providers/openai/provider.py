"""Every OpenAI-compatible API (Together, OpenAI, Groq, Fireworks, OpenRouter, Ollama, vLLM…)
through the official `openai` SDK. SDK retries are off: `moa.policies.retry` owns retrying. What is
sent is `openai_params`'s; here, sending it and reading what comes back."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

import openai
from openai import AsyncOpenAI

from moa.providers.base import Capabilities, ModelProfile
from moa.providers.openai.errors import Errors
from moa.providers.openai.params import chat_params
from moa.tokens import (
    DEFAULT_CONTEXT_WINDOW,
    KNOWN_CONTEXT_WINDOWS,
    estimate_tokens,
    messages_tokens,
)
from moa.tooluse import DeltaCleaner, as_deltas
from moa.types import ChatRequest, Completion, StreamChunk, Usage

# How long the end of a stream's body may take after `[DONE]`: waiting for it is what keeps
# the connection for the next call, never worth delaying an answer already complete.
BODY_END_S = 0.1


class OpenAICompatibleProvider:
    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str,
        api_key_env: str | None = None,
        # A backstop only: moa's TimeoutBound policy bounds each call by its own timeout.
        timeout_s: float = 600.0,
        default_headers: Mapping[str, str] | None = None,
        capabilities: Capabilities | None = None,
        context_windows: Mapping[str, int] | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.capabilities = capabilities or Capabilities()
        self._errors = Errors(name, base_url, api_key_env)
        self._windows = dict(context_windows or KNOWN_CONTEXT_WINDOWS)
        self._client = AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,
            timeout=timeout_s,
            default_headers=dict(default_headers or {}),
        )

    def profile(self, model: str) -> ModelProfile:
        # The hosted APIs apply each model's chat template themselves: a system role always works.
        return ModelProfile(
            context_window=self._windows.get(model, DEFAULT_CONTEXT_WINDOW),
            capabilities=self.capabilities,
        )

    async def aclose(self) -> None:
        await self._client.close()

    @property
    def errors(self) -> Errors:
        return self._errors

    def completion_of(self, request: ChatRequest, body: Any) -> Completion:
        """A chat completion's JSON body (a Batch API job's output row) as a `Completion`."""
        return self._completion(request, body)

    # The SDK builds and sends each request and raises its typed status and connection errors;
    # bodies are read through its raw-response API and parsed here, because turning every
    # streamed chunk into typed models cost 2.5x the CPU of the whole call (benchmarks rows 3-4).

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                **chat_params(request, accepts=self.capabilities)
            )
            body = json.loads(raw.http_response.content)
        except openai.OpenAIError as exc:
            raise self._errors.convert(exc, request.model) from exc
        except ValueError as exc:  # not JSON: an HTML error page, a truncated body
            raise self._errors.bad_body(request.model, f"{type(exc).__name__}: {exc}") from exc
        return self._completion(request, body)

    def _completion(self, request: ChatRequest, body: Any) -> Completion:
        try:
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
            calls = tuple(choice["message"].get("tool_calls") or ())
            logprobs = tuple((choice.get("logprobs") or {}).get("content") or ())
            finish = choice.get("finish_reason")
            usage = _usage(body.get("usage"))
        except (KeyError, IndexError, TypeError, AttributeError):
            raise self._errors.bad_body(
                request.model, "no choices[0].message in the body"
            ) from None
        if not isinstance(text, str):
            raise self._errors.bad_body(request.model, "choices[0].message.content is not text")
        usage = usage or _estimate(request, text)
        model = body.get("model") if isinstance(body.get("model"), str) else None
        return Completion(text, usage, finish, tool_calls=calls, logprobs=logprobs, model=model)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        params = chat_params(request, stream=True, accepts=self.capabilities)
        streamed = False
        try:
            async with self._client.chat.completions.with_streaming_response.create(
                **params
            ) as response:
                http = _http_library(response.http_response)
                try:
                    if not _is_event_stream(response.headers.get("content-type", "")):
                        # A server that ignored stream=true (or an error page served as 200).
                        body = json.loads(await response.read())
                        yield _as_chunk(self._completion(request, body))
                        return
                    chunks = self._chunks(request, response.iter_lines(), http)
                    async with aclosing(chunks):
                        async for chunk in chunks:
                            streamed = True
                            yield chunk
                except http.RequestError as exc:
                    timed_out = isinstance(exc, http.TimeoutException)
                    raise self._errors.broken(request.model, exc, streamed, timed_out) from exc
        except openai.OpenAIError as exc:
            raise self._errors.convert(exc, request.model) from exc
        except ValueError as exc:  # JSON that does not parse
            raise self._errors.bad_body(request.model, f"{type(exc).__name__}: {exc}") from exc

    async def _chunks(
        self, request: ChatRequest, lines: AsyncIterator[str], http: Any
    ) -> AsyncGenerator[StreamChunk, None]:
        """Chat-completion chunks from server-sent events; every chunk's finish reason is kept
        (llama.cpp's server sends it in a chunk whose delta is empty), and a stream that ends
        without usage (servers that ignore `stream_options`) gets an estimate, marked as such."""
        parts: list[str] = []
        usage: Usage | None = None
        finish: str | None = None
        model: str | None = None  # the model that answered, as every chunk says
        clean = DeltaCleaner()
        async with aclosing(_sse_data(lines)) as events:
            async for data in events:
                if data == "[DONE]":
                    await _read_to_end(events, http)
                    break
                chunk = json.loads(data)
                if not isinstance(chunk, dict):
                    raise ValueError("a stream event that is not a JSON object")
                if chunk.get("error"):
                    raise self._errors.stream_error(request.model, chunk["error"])
                piece = _piece(chunk, clean)
                model = model or (chunk["model"] if isinstance(chunk.get("model"), str) else None)
                finish = piece.finish_reason or finish
                usage = _usage(chunk.get("usage")) or usage
                if piece.text or piece.finish_reason or piece.tool_calls or piece.logprobs:
                    parts.append(piece.text)
                    yield piece
        usage = usage or _estimate(request, "".join(parts))
        yield StreamChunk(usage=usage, finish_reason=finish, model=model)


async def _sse_data(lines: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    """The `data` of each server-sent event, per the spec: consecutive `data:` lines of one
    event are joined with newlines, a blank line ends the event, other fields are skipped."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


async def _read_to_end(events: AsyncIterator[str], http: Any) -> None:
    """Read what follows `[DONE]` up to the end of the body, as the SDK's own streams do: an
    HTTP/1.1 connection goes back to the pool only once its response was read whole; closed
    before, it is dropped and the next call opens a new one (benchmark row 3)."""
    try:
        async with asyncio.timeout(BODY_END_S):
            async for _ in events:
                pass
    except (TimeoutError, http.RequestError):
        pass  # the answer is complete: only the connection is lost


def _is_event_stream(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


def _http_library(response: object) -> Any:
    """The HTTP library under the SDK (httpx, or httpx2 in newer SDKs): reading a body raises
    its errors, which are not part of the SDK's API. Both name them alike (RequestError,
    TimeoutException), so they are looked up on the library the response belongs to."""
    return importlib.import_module(type(response).__module__.partition(".")[0])


def _piece(chunk: dict[str, Any], clean: DeltaCleaner) -> StreamChunk:
    """What one chat-completion chunk adds: text, tool-call deltas, log probabilities."""
    choices = chunk.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return StreamChunk()
    delta = choices[0].get("delta") or {}
    return StreamChunk(
        text=delta.get("content") or "",
        finish_reason=choices[0].get("finish_reason"),
        tool_calls=clean(delta.get("tool_calls") or ()),
        logprobs=tuple((choices[0].get("logprobs") or {}).get("content") or ()),
    )


def _as_chunk(completion: Completion) -> StreamChunk:
    return StreamChunk(
        completion.text,
        completion.usage,
        completion.finish_reason,
        tool_calls=as_deltas(completion.tool_calls),
        logprobs=completion.logprobs,
        model=completion.model,
    )


def _estimate(request: ChatRequest, output: str) -> Usage:
    return Usage(messages_tokens(request.messages), estimate_tokens(output), estimated=True)


def _usage(data: object) -> Usage | None:
    if not isinstance(data, dict):
        return None
    # OpenRouter reports what the call was billed, in USD, as `usage.cost`.
    cost = data.get("cost")
    reported = float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None
    return Usage(
        int(data.get("prompt_tokens") or 0),
        int(data.get("completion_tokens") or 0),
        cost_usd=reported,
    )
