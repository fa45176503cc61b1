"""OpenAI's Batch API on the fake upstream: `/v1/files` (purpose=batch, JSONL) and
`/v1/batches`, so batch runs are tested and benchmarked with no provider.

    up.batches.delay_s = 5.0        # a job is validating, in_progress, finalizing, then done
    up.batches.expire(3, jobs=1)    # the next job expires having answered 3 requests
    up.batches.refuse("m", "...")   # lines for model m fail validation (the job: `failed`)
    up.batches.available = False    # a provider without the API: every route answers 404
    up.batches.finish()             # every job still running is done now
    up.batches.jobs_for("m")        # the jobs created for model m

A job's answers are the model's scripted replies, as `/v1/chat/completions` gives them
(`answer`, from the fake upstream); a reply scripted with an error status is a row of the
job's error file. Status follows the clock: the first tenth of `delay_s` validating, then
in_progress (its `request_counts` growing), the last tenth finalizing.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Body = dict[str, Any]
Answer = Callable[[Body], tuple[int, Body]]
Store = Callable[[list[Body]], str | None]  # keeps rows as a file; its id (None: no rows)


@dataclass
class Job:
    id: str
    input_file_id: str
    endpoint: str
    model: str | None
    lines: list[Body]
    created: float  # time.monotonic()
    delay_s: float
    expire_after: int | None
    errors: list[Body] = field(default_factory=list)  # validation: the job ends `failed`
    metadata: Body | None = None
    cancelled: bool = False
    status: str = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: Body = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})

    def view(self, answer: Answer, store: Store) -> Body:
        """The job as `GET /v1/batches/{id}` shows it now (moving it on with the clock)."""
        self._advance(answer, store)
        errors = {"object": "list", "data": self.errors} if self.status == "failed" else None
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": errors,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(time.time()),
            "request_counts": dict(self.counts),
            "metadata": self.metadata,
        }

    def _advance(self, answer: Answer, store: Store) -> None:
        if self.status in ("completed", "failed", "expired", "cancelled"):
            return
        share = 1.0 if self.delay_s <= 0 else (time.monotonic() - self.created) / self.delay_s
        if self.errors and share >= 0.1:
            self.status = "failed"
        elif self.cancelled:
            self._end(answer, store, 0, "cancelled")
        elif share >= 1.0:
            done = len(self.lines) if self.expire_after is None else self.expire_after
            self._end(answer, store, done, "completed" if done >= len(self.lines) else "expired")
        elif share >= 0.9:
            self.status = "finalizing"
        elif share >= 0.1:
            self.status = "in_progress"
            self.counts["completed"] = int(len(self.lines) * (share - 0.1) / 0.8)

    def _end(self, answer: Answer, store: Store, done: int, status: str) -> None:
        """Answer the first `done` requests (output or error file), the rest left unfinished."""
        out: list[Body] = []
        failed: list[Body] = []
        for i, line in enumerate(self.lines):
            row: Body = {"id": f"batch_req_{self.id}_{i}", "custom_id": line["custom_id"]}
            if i >= done:
                unrun = "batch_expired" if status == "expired" else "batch_cancelled"
                message = f"the request was not run before the batch was {status}"
                failed.append(
                    row | {"response": None, "error": {"code": unrun, "message": message}}
                )
                continue
            code, payload = answer(line["body"])
            response = {"status_code": code, "request_id": f"req_{i}", "body": payload}
            (out if code == 200 else failed).append(row | {"response": response, "error": None})
        self.counts = {"total": len(self.lines), "completed": len(out), "failed": len(failed)}
        self.output_file_id = store(out)
        self.error_file_id = store(failed)
        self.status = status


class FakeBatchAPI:
    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._created = threading.Condition(self._lock)
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.available = True
            self.delay_s = 0.0
            self.files: dict[str, bytes] = {}
            self.jobs: dict[str, Job] = {}
            self.uploads = 0
            self._refused: dict[str, str] = {}
            self._expiring: list[int] = []

    def expire(self, after: int, jobs: int = 1) -> None:
        """The next `jobs` jobs expire once `after` of their requests are answered."""
        with self._lock:
            self._expiring += [after] * jobs

    def wait_for_jobs(self, count: int, timeout: float) -> bool:
        """Block until `count` jobs exist (for a test driving a `moa batch` process)."""
        with self._created:
            return self._created.wait_for(lambda: len(self.jobs) >= count, timeout)

    def refuse(self, model: str, message: str = "model not available for batch") -> None:
        with self._lock:
            self._refused[model] = message

    def finish(self) -> None:
        """Every job still running completes at its next look."""
        with self._lock:
            for job in self.jobs.values():
                job.delay_s = min(job.delay_s, time.monotonic() - job.created)

    def jobs_for(self, model: str) -> list[Job]:
        with self._lock:
            return [j for j in self.jobs.values() if j.model == model]

    def routes(self) -> list[Route]:
        return [
            Route("/v1/files", self._upload, methods=["POST"]),
            Route("/v1/files/{id}/content", self._content, methods=["GET"]),
            Route("/v1/batches", self._create, methods=["POST"]),
            Route("/v1/batches", self._list, methods=["GET"]),
            Route("/v1/batches/{id}", self._retrieve, methods=["GET"]),
            Route("/v1/batches/{id}/cancel", self._cancel, methods=["POST"]),
        ]

    # -- HTTP --------------------------------------------------------------------------------

    async def _upload(self, request: Request) -> Response:
        if not self.available:
            return _error(404, "Invalid URL (POST /v1/files)")
        raw = await request.body()
        header = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
        parts = {
            p.get_param("name", header="content-disposition"): p
            for p in BytesParser(policy=HTTP).parsebytes(header + raw).iter_parts()
        }
        file, purpose = parts.get("file"), parts.get("purpose")
        if file is None or purpose is None or purpose.get_content().strip() != "batch":
            return _error(400, "expected a multipart `file` with purpose=batch")
        content = file.get_payload(decode=True)
        assert isinstance(content, bytes)
        with self._lock:
            file_id = f"file-{next(self._ids)}"
            self.files[file_id] = content
            self.uploads += 1
        return JSONResponse(_file(file_id, content, "batch"))

    async def _content(self, request: Request) -> Response:
        if not self.available:
            return _error(404, "Invalid URL")
        with self._lock:
            content = self.files.get(request.path_params["id"])
        if content is None:
            return _error(404, "No such file")
        return Response(content, media_type="application/octet-stream")

    async def _create(self, request: Request) -> Response:
        if not self.available:
            return _error(404, "Invalid URL (POST /v1/batches)")
        body = await request.json()
        content = self.files.get(str(body.get("input_file_id")))
        if content is None:
            return _error(400, f"no file {body.get('input_file_id')!r}")
        with self._created:
            job = self._job(body, content)
            self.jobs[job.id] = job
            self._created.notify_all()
            return JSONResponse(self._view(job))

    async def _list(self, request: Request) -> Response:
        if not self.available:
            return _error(404, "Invalid URL")
        with self._lock:
            views = [self._view(j) for j in reversed(self.jobs.values())]
        return JSONResponse({"object": "list", "data": views, "has_more": False})

    async def _retrieve(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["id"])
        if not self.available or job is None:
            return _error(404, "No such batch")
        with self._lock:
            return JSONResponse(self._view(job))

    async def _cancel(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["id"])
        if not self.available or job is None:
            return _error(404, "No such batch")
        with self._lock:
            if job.status not in ("completed", "failed", "expired", "cancelled"):
                job.cancelled = True
            return JSONResponse(self._view(job))

    # -- jobs ----------------------------------------------------------------------------------

    def _job(self, body: Body, content: bytes) -> Job:
        expire_after = self._expiring.pop(0) if self._expiring else None
        job = _validated(f"batch_{next(self._ids)}", body, content, self._refused)
        job.delay_s, job.expire_after = self.delay_s, expire_after
        return job

    def _view(self, job: Job) -> Body:
        return job.view(self._answer, self._store)

    def _store(self, rows: list[Body]) -> str | None:
        if not rows:
            return None
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
        return file_id


def _validated(job_id: str, body: Body, content: bytes, refused: dict[str, str]) -> Job:
    """A new job over the file `content`, with what fails validation in it."""
    lines, errors = _parse(content, str(body.get("endpoint")))
    models = {str(line["body"].get("model")) for line in lines}
    if len(models) > 1:
        errors.append(_problem("mixed_models", "requests for more than one model", None))
    for number, line in enumerate(lines, 1):
        message = refused.get(str(line["body"].get("model")))
        if message is not None:
            errors.append(_problem("model_not_found", message, number))
    return Job(
        id=job_id,
        input_file_id=str(body["input_file_id"]),
        endpoint=str(body.get("endpoint")),
        model=next(iter(models)) if len(models) == 1 else None,
        lines=lines,
        created=time.monotonic(),
        delay_s=0.0,
        expire_after=None,
        errors=errors,
        metadata=body.get("metadata"),
        counts={"total": len(lines), "completed": 0, "failed": 0},
    )


def _parse(content: bytes, endpoint: str) -> tuple[list[Body], list[Body]]:
    """The lines of a batch input file, and what fails validation in them (by line)."""
    lines: list[Body] = []
    errors: list[Body] = []
    seen: set[str] = set()
    for number, text in enumerate(content.decode("utf-8", "replace").splitlines(), 1):
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            errors.append(_problem("invalid_json_line", "not valid JSON", number))
            continue
        if not isinstance(line, dict) or not isinstance(line.get("body"), dict):
            errors.append(_problem("invalid_request", "no request `body`", number))
            continue
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or custom_id in seen:
            errors.append(_problem("duplicate_custom_id", "custom_id missing or repeated", number))
        if line.get("url") != endpoint or line.get("method") != "POST":
            errors.append(_problem("invalid_url", f"expected POST {endpoint}", number))
        seen.add(str(custom_id))
        lines.append(line)
    return lines, errors


def _problem(code: str, message: str, line: int | None) -> Body:
    return {"code": code, "message": message, "param": None, "line": line}


def _file(file_id: str, content: bytes, purpose: str) -> Body:
    return {
        "id": file_id,
        "object": "file",
        "bytes": len(content),
        "created_at": int(time.time()),
        "filename": "batch.jsonl",
        "purpose": purpose,
        "status": "processed",
    }


def _error(status: int, message: str) -> Response:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return JSONResponse({"error": error}, status_code=status)
