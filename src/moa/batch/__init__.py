"""Many prompts through one mixture: `moa batch`, its queue workers and its Batch-API runs.

`items` runs items through a job with bounded concurrency into a resumable JSONL file
(`jsonl`), within a budget; `shard` splits a run across hosts; `queue/` is the work queue on
Redis, filled by `queued` and drained by `worker`; `batch_api/` sends a run's calls as
provider Batch API jobs. Below the faces (the CLI and evaluation import it); may import the
recipes, the engine and everything below them.
"""
