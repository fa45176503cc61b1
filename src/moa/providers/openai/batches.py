"""An OpenAI-compatible provider's Batch API through the official SDK (`client.files`,
`client.batches`): a JSONL file of `{custom_id, method, url, body}` uploaded with
`purpose=batch`, a job created over it, polled, its output and error files read, cancelled.

The control-plane calls are retried by moa's one retry loop (moa.policies.retry); what each
request of a job answered is read here into the same `Completion` a real-time call gives.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import openai

from moa.errors import BatchAPIError, ProviderError, UpstreamStatusError
from moa.policies.retry import RetryPolicy, with_retries
from moa.providers.base import Capabilities
from moa.providers.openai.params import chat_params
from moa.providers.openai.provider import OpenAICompatibleProvider
from moa.types import ChatRequest, Completion

ENDPOINT: Final = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# Error-file codes of requests that never ran (resubmitted, or sent real-time), as opposed
# to requests that ran and failed (failed calls of their prompt's layer).
UNRUN = frozenset({"batch_expired", "batch_cancelled"})
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JobView:
    """A Batch API job as its provider last showed it."""

    id: str
    status: str
    input_file_id: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    errors: tuple[tuple[int | None, str, str], ...] = ()  # (line, code, message): validation

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class Row:
    """One request's line of an output or error file."""

    custom_id: str
    status: int | None  # the HTTP status it was answered with; None: it never ran
    body: dict[str, Any] = field(default_factory=dict)
    code: str | None = None  # the error's code (`batch_expired`, `context_length_exceeded`, …)
    message: str = ""

    @property
    def ran(self) -> bool:
        return self.code not in UNRUN


class BatchClient:
    """The Batch API of one OpenAI-compatible provider (the same endpoint and key)."""

    def __init__(self, provider: OpenAICompatibleProvider, retry: RetryPolicy | None = None):
        self.provider = provider
        self.name = provider.name
        self._client = provider._client
        self._retry = retry or RetryPolicy()

    @staticmethod
    def line(custom_id: str, request: ChatRequest, accepts: Capabilities | None = None) -> bytes:
        """The request as one line of a batch input file (`accepts`: the provider's
        capabilities, as for its real-time calls)."""
        body = chat_params(request, accepts=accepts)
        body.update(body.pop("extra_body", None) or {})  # the SDK would merge it into the body
        entry = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
        return (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()

    async def upload(self, content: bytes) -> str:
        upload = self._client.files.create
        file = await self._call(
            lambda: upload(file=("moa-batch.jsonl", content), purpose="batch"), "upload"
        )
        return file.id

    async def create(self, input_file_id: str, window: str, metadata: dict[str, str]) -> JobView:
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

    async def retrieve(self, job_id: str) -> JobView:
        return _view(await self._call(lambda: self._client.batches.retrieve(job_id), "poll"))

    async def cancel(self, job_id: str) -> JobView:
        return _view(await self._call(lambda: self._client.batches.cancel(job_id), "cancel"))

    async def find(self, input_file_id: str, pages: int = 20) -> JobView | None:
        """The job created over `input_file_id`, if any (one created just before a crash)."""
        page = await self._call(lambda: self._client.batches.list(limit=100), "list jobs")
        for _ in range(pages):
            for job in page.data:
                if job.input_file_id == input_file_id:
                    return _view(job)
            if not page.has_next_page():
                return None
            page = await self._call(page.get_next_page, "list jobs")
        return None

    async def rows(self, file_id: str | None) -> list[Row]:
        if file_id is None:
            return []
        content = await self._call(lambda: self._client.files.content(file_id), "download")
        return [_row(json.loads(text)) for text in content.text.splitlines() if text.strip()]

    def completion(self, request: ChatRequest, row: Row) -> Completion:
        """What a request answered: its completion, or the upstream error it failed with."""
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


def _view(job: Any) -> JobView:
    counts = job.request_counts
    errors = tuple(
        (e.line, e.code or "", e.message or "") for e in ((job.errors and job.errors.data) or [])
    )
    return JobView(
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


def _row(data: dict[str, Any]) -> Row:
    response = data.get("response") or {}
    error = data.get("error") or {}
    body = response.get("body") or {}
    inner = body.get("error") if isinstance(body, dict) else None
    inner = inner if isinstance(inner, dict) else {}
    return Row(
        str(data.get("custom_id")),
        response.get("status_code"),
        body if isinstance(body, dict) else {},
        error.get("code") or inner.get("code"),
        str(error.get("message") or inner.get("message") or ""),
    )
