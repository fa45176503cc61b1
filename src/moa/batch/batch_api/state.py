"""What a `--batch-api` run has submitted and what came back, beside its output:

    OUTPUT.batch.json            the jobs (provider, model, file, job id, status, requests)
    OUTPUT.batch-results.jsonl   each answered request's row, appended durably

The state file is rewritten whole (atomically) whenever a job changes: before a job is
created its uploaded file is recorded, so a crash between the two is resolved by looking the
job up by that file, never by creating a second one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from moa.batch.jsonl import AppendLog, write_json_atomic
from moa.errors import ConfigError
from moa.providers.base import BatchJob, BatchRow

VERSION = 1


def state_path(output: Path) -> Path:
    return output.with_name(output.name + ".batch.json")


def results_path(output: Path) -> Path:
    return output.with_name(output.name + ".batch-results.jsonl")


def custom_id(item: str, provider: str, line_body: Any, occurrence: int) -> str:
    """The same call of the same prompt always gets the same id (that is how a rerun finds
    its jobs); `occurrence` tells apart identical calls of one prompt (a model listed twice)."""
    text = json.dumps([item, provider, line_body, occurrence], sort_keys=True)
    return "moa-" + hashlib.sha256(text.encode()).hexdigest()[:24]


class RunState:
    """The jobs of one output's `--batch-api` run (`jobs[i]` a dict, `requests` cid → i)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.jobs: list[dict[str, Any]] = []
        self.requests: dict[str, int] = {}
        self.providers: dict[str, dict[str, str | None]] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.jobs, self.requests = data["jobs"], data["requests"]
                self.providers = data.get("providers", {})
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(
                    f"{path}: not a moa batch state file ({exc}); move it away to start over "
                    f"(its jobs, if any, keep running: `moa batch cancel` needs this file)"
                ) from None

    def save(self) -> None:
        write_json_atomic(
            self.path,
            {
                "version": VERSION,
                "providers": self.providers,
                "jobs": self.jobs,
                "requests": self.requests,
            },
        )

    def job_of(self, cid: str) -> dict[str, Any] | None:
        index = self.requests.get(cid)
        return None if index is None else self.jobs[index]

    def add_job(
        self,
        provider: str,
        model: str,
        cids: list[str],
        *,
        layer: str,
        file_id: str,
        replaces: dict[str, str],
    ) -> dict[str, Any]:
        """A job whose file is uploaded and whose creation is about to be asked; `replaces`
        names, per request resubmitted, the job that left it unfinished."""
        job: dict[str, Any] = {
            "id": None,
            "provider": provider,
            "model": model,
            "layer": layer,
            "file": file_id,
            "status": "uploaded",
            "counts": {"total": len(cids), "completed": 0, "failed": 0},
            "requests": cids,
            "replaces": replaces,
            "ingested": False,
        }
        self.jobs.append(job)
        for cid in cids:
            self.requests[cid] = len(self.jobs) - 1
        self.save()
        return job

    def update(self, job: dict[str, Any], view: BatchJob) -> None:
        """Record what the provider last said of `job` (saved only when it changed)."""
        counts = {"total": view.total, "completed": view.completed, "failed": view.failed}
        if job["id"] == view.id and job["status"] == view.status and job["counts"] == counts:
            return
        job.update(id=view.id, status=view.status, counts=counts)
        job["output_file"], job["error_file"] = view.output_file_id, view.error_file_id
        job["errors"] = [list(e) for e in view.errors]
        self.save()


class Results:
    """Each request's row, by custom_id, kept as it is read (an append-only JSONL file)."""

    def __init__(self, path: Path) -> None:
        self._log = AppendLog(path)

    def __enter__(self) -> Results:
        self._log.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._log.close()

    def get(self, cid: str) -> BatchRow | None:
        data = self._log.get(cid)
        if data is None:
            return None
        return BatchRow(
            cid, data.get("status"), data.get("body") or {}, data.get("code"), data["message"]
        )

    def add(self, row: BatchRow) -> None:
        data = asdict(row)
        data["id"] = data.pop("custom_id")
        self._log.append(data)
