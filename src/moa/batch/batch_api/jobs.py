"""One round of jobs: the parked calls grouped by provider and model, split at the provider's
limits, checked against the budget before any upload, submitted (or, after a restart, found
again), polled until each job ends, and read back into the parked calls.

A request a job left unrun (expired, cancelled) is parked again for the next round, which
resubmits it, or, with `realtime_fallback`, is answered real-time; its prompt's notes say so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moa import telemetry
from moa.batch.batch_api.collector import Collector, Waiter
from moa.batch.batch_api.state import Results, RunState
from moa.errors import BatchAPIError, BatchJobError, BudgetExceededError, UnpricedModelError
from moa.providers.base import BatchAPI, BatchClient, BatchJob, BatchRow

Progress = Callable[[str, list[dict[str, Any]]], None]  # (round label, its jobs) as they move


@dataclass(slots=True)
class Rounds:
    state: RunState
    results: Results
    collector: Collector
    apis: dict[str, BatchAPI]
    client: Callable[[str], BatchClient]
    poll_s: float = 30.0
    realtime_fallback: bool = False
    budget_usd: float | None = None
    progress: Progress | None = None
    jobs_created: int = 0

    async def drive(self) -> None:
        while await self.collector.parked():
            await self.round([w for w in self.collector.waiters.values() if not w.future.done()])

    async def round(self, waiters: list[Waiter]) -> None:
        began = time.time_ns()  # each job's span starts with its round (moa.telemetry)
        jobs: list[dict[str, Any]] = []
        new: list[Waiter] = []
        for waiter in waiters:
            job = self.state.job_of(waiter.cid)
            if job is not None and not job["ingested"] and job["status"] != "failed":
                if job not in jobs:
                    jobs.append(job)  # submitted by an earlier run: poll it, never resubmit
            else:
                new.append(waiter)
        check_budget(new, self.budget_usd, self.collector.spent_usd)
        label = ", ".join(sorted({w.layer for w in waiters}))
        for group in split(new, self.apis):
            jobs.append(await self._submit(group, label))
        await self._resume(jobs)
        await self._poll(label, jobs)
        by_cid = {w.cid: w for w in waiters}
        for job in jobs:
            try:
                await self._ingest(job, by_cid)
            finally:
                telemetry.batch_job(job, began)

    async def _submit(self, group: list[Waiter], label: str) -> dict[str, Any]:
        first = group[0]
        client = self.client(first.provider)
        replaces = {}
        for waiter in group:
            old = self.state.job_of(waiter.cid)
            if old is not None:
                replaces[waiter.cid] = old["id"]
                self.collector.note(
                    waiter.item,
                    waiter.record,
                    f"resubmitted: batch job {old['id']} ended {old['status']} before it ran",
                )
        file_id = await client.upload(b"".join(w.line for w in group))
        self.state.providers.setdefault(first.provider, self._where(client))
        job = self.state.add_job(
            first.provider,
            first.model,
            [w.cid for w in group],
            layer=label,
            file_id=file_id,
            replaces=replaces,
        )
        await self._create(job, client)
        return job

    async def _create(self, job: dict[str, Any], client: BatchClient) -> None:
        window = self.apis[job["provider"]].completion_window
        view = await client.create(job["file"], window, {"moa_layer": job["layer"][:500]})
        self.jobs_created += 1
        self.state.update(job, view)

    async def _resume(self, jobs: list[dict[str, Any]]) -> None:
        """A job recorded with its file but no id was being created when a run stopped: the
        provider's job over that file, if it made one, else a new one (its first)."""
        for job in jobs:
            if job["id"] is None:
                client = self.client(job["provider"])
                found = await client.find(job["file"])
                if found is not None:
                    self.state.update(job, found)
                else:
                    await self._create(job, client)

    async def _poll(self, label: str, jobs: list[dict[str, Any]]) -> None:
        views: dict[str, BatchJob] = {}
        while True:
            for job in jobs:
                view = views.get(job["id"])
                if view is None or not view.done:
                    view = await self.client(job["provider"]).retrieve(job["id"])
                    views[job["id"]] = view
                    self.state.update(job, view)
            if self.progress is not None:
                self.progress(label, jobs)
            if all(v.done for v in views.values()):
                return
            await asyncio.sleep(self.poll_s)

    async def _ingest(self, job: dict[str, Any], waiters: dict[str, Waiter]) -> None:
        if job["status"] == "failed":
            raise BatchJobError(_validation(job, waiters))
        client = self.client(job["provider"])
        rows = await client.rows(job.get("output_file")) + await client.rows(job.get("error_file"))
        for row in rows:
            if row.ran:
                self.results.add(row)
                self._answer(job, row, waiters.get(row.custom_id))
        job["ingested"] = True
        self.state.save()
        for cid in job["requests"]:
            if self.results.get(cid) is not None:
                continue
            code = "batch_expired" if job["status"] == "expired" else f"batch_{job['status']}"
            if self.realtime_fallback:
                self.collector.answer(cid, BatchRow(cid, None, code=code), job["id"])
            # else: still parked, so the next round resubmits it

    def _answer(self, job: dict[str, Any], row: BatchRow, waiter: Waiter | None) -> None:
        if waiter is None:
            return
        if waiter.record is not None:
            waiter.record.notes.append(f"answered by batch job {job['id']}")
        self.collector.answer(row.custom_id, row, job["id"])

    @staticmethod
    def _where(client: BatchClient) -> dict[str, str | None]:
        return {"base_url": client.base_url, "api_key_env": client.api_key_env}


def check_budget(new: list[Waiter], budget_usd: float | None, spent: float) -> None:
    """Refuse a round whose worst case, after what was spent, could pass the budget."""
    if budget_usd is None or not new:
        return
    worst = 0.0
    for waiter in new:
        if waiter.worst_usd is None:
            raise UnpricedModelError(waiter.model)
        worst += waiter.worst_usd
    if spent + worst > budget_usd:
        layers = ", ".join(sorted({w.layer for w in new}))
        raise BudgetExceededError(
            budget_usd=budget_usd,
            spent_usd=spent,
            worst_case_usd=worst,
            stage=f"{layers} ({len(new)} batch requests)",
            knob="--budget",
        )


def split(new: list[Waiter], apis: dict[str, BatchAPI]) -> list[list[Waiter]]:
    """Jobs of one provider and model each, within its request and byte limits."""
    groups: dict[tuple[str, str], list[list[Waiter]]] = {}
    sizes: dict[tuple[str, str], int] = {}
    for waiter in new:
        api = apis[waiter.provider]
        key = (waiter.provider, waiter.model)
        if len(waiter.line) > api.max_bytes:
            raise BatchAPIError(
                f"a request of prompt {waiter.item} to {waiter.model} is "
                f"{len(waiter.line):,} bytes, over {waiter.provider}'s Batch API file "
                f"limit of {api.max_bytes:,}: shorten the prompt, or set batch_api = false "
                f"under [providers.{waiter.provider}]"
            )
        chunks = groups.setdefault(key, [[]])
        if (
            len(chunks[-1]) >= api.max_requests
            or sizes.get(key, 0) + len(waiter.line) > api.max_bytes
        ):
            chunks.append([])
            sizes[key] = 0
        chunks[-1].append(waiter)
        sizes[key] = sizes.get(key, 0) + len(waiter.line)
    return [chunk for chunks in groups.values() for chunk in chunks if chunk]


def _validation(job: dict[str, Any], waiters: dict[str, Waiter]) -> str:
    """The one line a job that failed validation gets: its errors, by request."""
    shown = []
    for line, code, message in job.get("errors", [])[:5]:
        where = f"line {line}" if line else "the file"
        if line and 0 < line <= len(job["requests"]):
            waiter = waiters.get(job["requests"][line - 1])
            if waiter is not None:
                where = f"request {line} (prompt {waiter.item}, {waiter.layer})"
        shown.append(f"{where}: {message} [{code}]")
    more = len(job.get("errors", [])) - len(shown)
    detail = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
    return (
        f"batch job {job['id']} ({job['model']}) failed validation — {detail or 'no detail'} "
        f"— fix what it names and rerun: the job's requests are then submitted again"
    )
