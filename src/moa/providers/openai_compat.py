"""Every OpenAI-compatible API (Together, OpenAI, Groq, Fireworks, OpenRouter, Ollama, vLLM…)
through the official `openai` SDK. SDK retries are off: `moa.retry` owns retrying."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import openai
from openai import AsyncOpenAI

from moa.errors import ProviderError
from moa.retry import parse_retry_after
from moa.types import ChatRequest, Completion, StreamChunk, Usage


class OpenAICompatibleProvider:
    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str,
        api_key_env: str | None = None,
        timeout_s: float = 120.0,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.api_key_env = api_key_env
        self._client = AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=0,
            timeout=timeout_s,
            default_headers=dict(default_headers or {}),
        )

    def supports_system_role(self, model: str) -> bool:
        return True  # the hosted APIs apply each model's template themselves

    async def aclose(self) -> None:
        await self._client.close()

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        s = request.sampling
        params: dict[str, Any] = {"model": request.model, "messages": list(request.messages)}
        if s.temperature is not None:
            params["temperature"] = s.temperature
        if s.max_tokens is not None:
            params["max_tokens"] = s.max_tokens
        if s.seed is not None:
            params["seed"] = s.seed
        if s.stop:
            params["stop"] = list(s.stop)
        if request.timeout_s is not None:
            params["timeout"] = request.timeout_s
        return params

    # The SDK builds and sends each request and raises its typed status and connection errors;
    # bodies are read through its raw-response API and parsed here, because turning every
    # streamed chunk into typed models cost 2.5x the CPU of the whole call (benchmarks rows 3-4).

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                **self._params(request)
            )
            body = json.loads(raw.http_response.content)
        except openai.OpenAIError as exc:
            raise self._convert(exc, request.model) from exc
        except ValueError as exc:  # not JSON: an HTML error page, a truncated body
            raise self._bad_body(request.model, f"{type(exc).__name__}: {exc}") from exc
        try:
            choice = body["choices"][0]
            text = choice["message"]["content"]
            usage = _usage(body.get("usage"))
            finish = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise self._bad_body(request.model, "no choices[0].message in the body") from None
        if not isinstance(text, str) or not text.strip():
            raise ProviderError.empty(self.name, request.model)
        return Completion(text=text, usage=usage or Usage(), finish_reason=finish)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        params = self._params(request)
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
        streamed = False
        finish: str | None = None
        try:
            async with self._client.chat.completions.with_streaming_response.create(
                **params
            ) as response:
                async for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, `event:` lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if not isinstance(chunk, dict):
                        raise ValueError("a stream event that is not a JSON object")
                    if chunk.get("error"):
                        raise self._stream_error(request.model, chunk["error"])
                    text = ""
                    choices = chunk.get("choices") or []
                    if choices:
                        delta = choices[0].get("delta") or {}
                        text = delta.get("content") or ""
                        finish = choices[0].get("finish_reason") or finish
                    usage = _usage(chunk.get("usage"))
                    if text or usage:
                        streamed = True
                        yield StreamChunk(text=text, usage=usage, finish_reason=finish)
        except ProviderError:
            raise
        except openai.OpenAIError as exc:
            raise self._convert(exc, request.model) from exc
        except (ValueError, AttributeError, TypeError) as exc:
            raise self._bad_body(request.model, f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            # Reading the body raises the HTTP library's own errors (httpx or httpx2, by SDK
            # version), which are not part of the SDK's API: a stream that broke off.
            where = "broke off" if streamed else "failed before its first token"
            raise ProviderError(
                f"{self.name}:{request.model}: the stream {where} ({exc})",
                provider=self.name,
                model=request.model,
                kind="connection",
            ) from exc

    def _stream_error(self, model: str, error: object) -> ProviderError:
        message = error.get("message") if isinstance(error, dict) else error
        return ProviderError(
            f"{self.name}:{model}: error in the stream: {message}",
            provider=self.name,
            model=model,
            kind="status",
        )

    def _bad_body(self, model: str, why: str) -> ProviderError:
        return ProviderError(
            f"{self.name}:{model}: malformed response: {why}",
            provider=self.name,
            model=model,
            kind="malformed",
        )

    def _convert(self, exc: openai.OpenAIError, model: str) -> ProviderError:
        where = f"{self.name}:{model}"
        if isinstance(exc, openai.APITimeoutError):
            return ProviderError(
                f"{where} timed out", provider=self.name, model=model, kind="timeout"
            )
        if isinstance(exc, openai.APIConnectionError):
            return ProviderError(
                f"{where}: cannot reach {self.base_url} ({exc.__cause__ or exc})",
                provider=self.name,
                model=model,
                kind="connection",
            )
        if isinstance(exc, openai.APIStatusError):
            headers = {k.lower(): v for k, v in exc.response.headers.items()}
            kind = (
                "context_length"
                if _error_code(exc.body) == "context_length_exceeded"
                else ("status")
            )
            hint = ""
            if exc.status_code in (401, 403) and self.api_key_env:
                hint = f" — check the key in {self.api_key_env}"
            return ProviderError(
                f"{where}: HTTP {exc.status_code}: {_error_message(exc)}{hint}",
                provider=self.name,
                model=model,
                status_code=exc.status_code,
                headers=headers,
                retry_after=parse_retry_after(headers),
                kind=kind,
            )
        return self._bad_body(model, str(exc))


def _usage(data: object) -> Usage | None:
    if not isinstance(data, dict):
        return None
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


def _error_code(body: object) -> str | None:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            code = inner.get("code")
            return code if isinstance(code, str) else None
    return None


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])[:300]
    return exc.message[:300]
