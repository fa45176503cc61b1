"""Every OpenAI-compatible API (Together, OpenAI, Groq, Fireworks, OpenRouter, Ollama, vLLM…)
through the official `openai` SDK. SDK retries are off: `moa.retry` owns retrying."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import openai
import pydantic
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

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            response = await self._client.chat.completions.create(**self._params(request))
        except openai.OpenAIError as exc:
            raise self._convert(exc, request.model) from exc
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise self._bad_body(request.model, f"{type(exc).__name__}: {exc}") from exc
        if not response.choices:
            raise self._bad_body(request.model, "the response has no choices")
        choice = response.choices[0]
        text = choice.message.content
        if text is None or not text.strip():
            raise ProviderError.empty(self.name, request.model)
        usage = response.usage
        return Completion(
            text=text,
            usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
            finish_reason=choice.finish_reason,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        params = self._params(request)
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
        streamed = False
        try:
            stream = await self._client.chat.completions.create(**params)
            async with stream:
                finish: str | None = None
                async for chunk in stream:
                    usage = (
                        Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                        if chunk.usage
                        else None
                    )
                    text = ""
                    if chunk.choices:
                        choice = chunk.choices[0]
                        text = choice.delta.content or "" if choice.delta else ""
                        finish = choice.finish_reason or finish
                    if text or usage:
                        streamed = True
                        yield StreamChunk(text=text, usage=usage, finish_reason=finish)
        except openai.APIConnectionError as exc:
            if not streamed:
                raise self._convert(exc, request.model) from exc
            raise ProviderError(
                f"{self.name}:{request.model}: the stream broke off ({exc.__cause__ or exc})",
                provider=self.name,
                model=request.model,
                kind="connection",
            ) from exc
        except openai.OpenAIError as exc:
            raise self._convert(exc, request.model) from exc
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise self._bad_body(request.model, f"{type(exc).__name__}: {exc}") from exc

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
