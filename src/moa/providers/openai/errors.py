"""How the OpenAI-compatible adapter turns what went wrong into moa's typed upstream errors:
the SDK's own errors, error events inside a stream, bodies that are not the API's shape."""

from __future__ import annotations

from dataclasses import dataclass

import openai

from moa.errors import (
    ContextLengthError,
    MalformedResponseError,
    ProviderError,
    UpstreamConnectionError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from moa.policies.retry import parse_retry_after


@dataclass(frozen=True, slots=True)
class Errors:
    """The error constructors of one provider (its name, endpoint and key variable)."""

    name: str
    base_url: str
    api_key_env: str | None

    def stream_error(self, model: str, error: object) -> ProviderError:
        message = error.get("message") if isinstance(error, dict) else error
        status = error.get("code") if isinstance(error, dict) else None
        return UpstreamStatusError(
            f"{self.name}:{model}: error in the stream: {clip(str(message))}",
            provider=self.name,
            model=model,
            status_code=status if isinstance(status, int) else None,
        )

    def broken(self, model: str, exc: Exception, streamed: bool, timed_out: bool) -> ProviderError:
        where = "broke off" if streamed else "failed before its first token"
        error_type = UpstreamTimeoutError if timed_out else UpstreamConnectionError
        return error_type(
            f"{self.name}:{model}: the stream {where} ({type(exc).__name__}: {exc})",
            provider=self.name,
            model=model,
        )

    def bad_body(self, model: str, why: str) -> ProviderError:
        return MalformedResponseError(
            f"{self.name}:{model}: malformed response: {why}", provider=self.name, model=model
        )

    def convert(self, exc: openai.OpenAIError, model: str) -> ProviderError:
        where = f"{self.name}:{model}"
        if isinstance(exc, openai.APITimeoutError):
            return UpstreamTimeoutError(f"{where} timed out", provider=self.name, model=model)
        if isinstance(exc, openai.APIConnectionError):
            return UpstreamConnectionError(
                f"{where}: cannot reach {self.base_url} ({exc.__cause__ or exc})",
                provider=self.name,
                model=model,
            )
        if isinstance(exc, openai.APIStatusError):
            headers = {k.lower(): v for k, v in exc.response.headers.items()}
            error_type = (
                ContextLengthError
                if _error_code(exc.body) == "context_length_exceeded"
                else UpstreamStatusError
            )
            hint = ""
            if exc.status_code in (401, 403) and self.api_key_env:
                hint = f" — check the key in {self.api_key_env}"
            return error_type(
                f"{where}: HTTP {exc.status_code}: {_error_message(exc)}{hint}",
                provider=self.name,
                model=model,
                status_code=exc.status_code,
                headers=headers,
                retry_after=parse_retry_after(headers),
            )
        return self.bad_body(model, str(exc))


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
            return clip(str(inner["message"]))
    return clip(exc.message)


def clip(text: str, limit: int = 300) -> str:
    """An upstream's message, at most about `limit` characters, cut between words and saying
    so (a message cut mid-word reads as a different word)."""
    if len(text) <= limit:
        return text
    whole = text[limit].isspace() or text[limit - 1].isspace()
    cut = text[:limit] if whole else text[:limit].rsplit(None, 1)[0]
    cut = cut.rstrip(" ,;:")
    return f"{cut} […cut: {len(cut)} of {len(text)} characters]"
