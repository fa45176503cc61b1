"""An OpenAI-compatible provider's Batch API through the official SDK (`client.files`,
`client.batches`): a JSONL file of `{custom_id, method, url, body}` uploaded with
`purpose=batch`, a job created over it, polled, its output and error files read, cancelled.

The control-plane calls are retried by moa's one retry loop (moa.policies.retry); what each
request of a job answered is read here into the same `Completion` a real-time call gives.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import openai

from moa.errors import BatchAPIError, ProviderError, UpstreamStatusError
from moa.policies.retry import RetryPolicy, with_retries
from moa.providers.base import BatchJob, BatchRow
from moa.providers.openai.params import chat_params
from moa.providers.openai.provider import OpenAICompatibleProvider
from moa.types import ChatRequest, Completion

ENDPOINT: Final = "/v1/chat/completions"
T = TypeVar("T")


class OpenAIBatchClient:
    """The Batch API of one OpenAI-compatible provider (the same endpoint and key): a
    `moa.providers.base.BatchClient`."""

    def __init__(self, provider: OpenAICompatibleProvider, retry: RetryPolicy | None = None):
        self.provider = provider
        self.name = provider.name
        self._client = provider._client
        self._retry = retry or RetryPolicy()

    @property
    def base_url(self) -> str:
        return self.provider.base_url

    @property
    def api_key_env(self) -> str | None:
        return self.provider.api_key_env

    def line(self, custom_id: str, request: ChatRequest) -> bytes:
        """The request as one line of a batch input file, with the fields the provider
        takes (its capabilities, as for its real-time calls)."""
        body = chat_params(request, accepts=self.provider.capabilities)
        body.update(body.pop("extra_body", None) or {})  # the SDK would merge it into the body
        entry = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
        return (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()

    async def upload(self, content: bytes) -> str:
        upload = self._client.files.create
        file = await self._call(
            lambda: upload(file=("moa-batch.jsonl", content), purpose="batch"), "upload"
        )
        return file.id

    async def create(self, input_file_id: str, window: str, metadata: dict[str, str]) -> BatchJob:
        create = self._client.batches.create
        job = await self._call(
            lambda: create(
                input_file_id=input_file_id,
                endpoint=ENDPOINT,
                completion_window=window,  # type: ignore[arg-type]
                metadata=metadata,
            ),
            "create a job",
        )
        return _view(job)

    async def retrieve(self, job_id: str) -> BatchJob:
        return _view(await self._call(lambda: self._client.batches.retrieve(job_id), "poll"))

    async def cancel(self, job_id: str) -> BatchJob:
        return _view(await self._call(lambda: self._client.batches.cancel(job_id), "cancel"))

    async def find(self, input_file_id: str, pages: int = 20) -> BatchJob | None:
        page = await self._call(lambda: self._client.batches.list(limit=100), "list jobs")
        for _ in range(pages):
            for job in page.data:
                if job.input_file_id == input_file_id:
                    return _view(job)
            if not page.has_next_page():
                return None
            page = await self._call(page.get_next_page, "list jobs")
        return None

    async def rows(self, file_id: str | None) -> list[BatchRow]:
        if file_id is None:
            return []
        content = await self._call(lambda: self._client.files.content(file_id), "download")
        return [_row(json.loads(text)) for text in content.text.splitlines() if text.strip()]

    def completion(self, request: ChatRequest, row: BatchRow) -> Completion:
        if row.status == 200:
            return self.provider.completion_of(request, row.body)
        raise UpstreamStatusError(
            f"{self.name}:{request.model}: HTTP {row.status} in the batch job: "
            f"{row.message or row.code}",
            provider=self.name,
            model=request.model,
            status_code=row.status,
        )

    async def _call(self, make: Callable[[], Awaitable[T]], what: str) -> T:
        async def attempt() -> T:
            try:
                return await make()
            except openai.NotFoundError as exc:
                if what in ("upload", "create a job"):
                    raise BatchAPIError(
                        f"provider {self.name!r} answers 404 on {self.provider.base_url}/files "
                        f"— it offers no Batch API: set `batch_api = false` under "
                        f"[providers.{self.name}] (its calls then run real-time), or run "
                        f"without --batch-api"
                    ) from None
                raise self._error(exc, what) from exc
            except openai.OpenAIError as exc:
                raise self._error(exc, what) from exc

        value, _ = await with_retries(attempt, self._retry)
        return value

    def _error(self, exc: openai.OpenAIError, what: str) -> ProviderError:
        error = self.provider.errors.convert(exc, "batch")
        error.args = (f"{self.name} Batch API ({what}): {error}",)
        return error


def _view(job: Any) -> BatchJob:
    counts = job.request_counts
    errors = tuple(
        (e.line, e.code or "", e.message or "") for e in ((job.errors and job.errors.data) or [])
    )
    return BatchJob(
        job.id,
        job.status,
        job.input_file_id,
        job.output_file_id,
        job.error_file_id,
        counts.total if counts else 0,
        counts.completed if counts else 0,
        counts.failed if counts else 0,
        errors,
    )


def _row(data: dict[str, Any]) -> BatchRow:
    response = data.get("response") or {}
    error = data.get("error") or {}
    body = response.get("body") or {}
    inner = body.get("error") if isinstance(body, dict) else None
    inner = inner if isinstance(inner, dict) else {}
    return BatchRow(
        str(data.get("custom_id")),
        response.get("status_code"),
        body if isinstance(body, dict) else {},
        error.get("code") or inner.get("code"),
        str(error.get("message") or inner.get("message") or ""),
    )
