"""`moa batch --batch-api`: a batch run's calls sent as provider Batch API jobs, at the batch
price, layer by layer.

Every prompt runs through the ordinary engine, with one more link in each call's chain
(`parked.Parking`) that parks each call of a Batch-API provider instead of sending it. Once
every running prompt is parked (`collector.Collector`: the barrier between layers), the
parked calls are grouped by provider and model into jobs split at the provider's limits
(`jobs.Rounds`), polled, and their rows answer the parked calls; the prompts then build their
next layer's calls from those answers. Quorum, strategies' extra calls and fallbacks are the
engine's own: they become further rounds. Providers without a Batch API answer real-time
inside the same barrier.

What was submitted and answered is written beside the output as it changes (`state`), so a
rerun with the same arguments resumes polling the same jobs and submits nothing twice.
"""

from moa.batch.batch_api.run import cancel_jobs, run_batch_api

__all__ = ["cancel_jobs", "run_batch_api"]
