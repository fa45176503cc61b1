"""The work queue on Redis (`moa batch --queue`, `moa worker`): the queue itself (`work`),
its connection and key names (`link`), its Lua scripts (`scripts`) and its status (`status`).

Knows prompts only as keys and JSON bodies: the batch side (`moa.batch.queued`,
`moa.batch.worker`) gives them meaning. May import the vocabulary and `moa.policies.redis`.
"""
