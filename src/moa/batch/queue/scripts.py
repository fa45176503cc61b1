"""The Lua scripts of the work queue (`moa.batch.queue.work`): each step that must not be seen
half done is one script, so Redis runs it whole or not at all.

Every key of one queue has the same hash tag, `{moa:queue:NAME}`, so they run on Redis Cluster
too. Times are Redis's own clock (`TIME`, ms): the workers' clocks need not agree.
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: meta, stream. ARGV: fingerprint, recipe JSON, options JSON, visibility ms, group.
# Opens a run on the queue, or finds the same run there (a rerun): returns {1, fingerprint}
# when the queue is (now) this run's, {0, the other run's fingerprint} when it holds another.
OPEN = (
    _NOW
    + """
local held = redis.call('HGET', KEYS[1], 'fingerprint')
if held and held ~= ARGV[1] then return {0, held} end
if not held then
  redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'recipe', ARGV[2], 'options', ARGV[3],
             'created_ms', now)
end
redis.call('HSET', KEYS[1], 'visibility_ms', ARGV[4])
local made = redis.pcall('XGROUP', 'CREATE', KEYS[2], ARGV[5], '0', 'MKSTREAM')
if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP') then
  return redis.error_reply(made.err)
end
return {1, ARGV[1]}
"""
)

# KEYS: stream, todo, results, failures. ARGV: key, item JSON, key, item JSON, ...
# Adds each prompt not answered yet and not already waiting; a prompt that failed before is
# queued again (its failure forgotten). Returns how many were added: a rerun adds none.
ENQUEUE = """
local added = 0
for i = 1, #ARGV, 2 do
  local key = ARGV[i]
  if redis.call('HEXISTS', KEYS[3], key) == 0 and redis.call('SADD', KEYS[2], key) == 1 then
    redis.call('HDEL', KEYS[4], key)
    redis.call('XADD', KEYS[1], '*', 'key', key, 'item', ARGV[i + 1])
    added = added + 1
  end
end
return added
"""

# KEYS: results, todo, stream, meta. ARGV: group, entry id, key, answer JSON, consumer.
# The answer is kept (unless another worker's is already: the first one stays) and the
# entry acknowledged and dropped, in one step: an entry is never acked without its answer.
# Returns 1 if this answer is the one kept, 0 if it was a second answer of the prompt.
RECORD = """
local fresh = redis.call('HSETNX', KEYS[1], ARGV[3], ARGV[4])
redis.call('SREM', KEYS[2], ARGV[3])
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
if fresh == 1 then
  redis.call('HINCRBY', KEYS[4], 'answered_by:' .. ARGV[5], 1)
else
  redis.call('HINCRBY', KEYS[4], 'second_answers', 1)
end
return fresh
"""

# KEYS: results, todo, failures, stream. ARGV: group, entry id, key, message.
# A prompt whose run failed: noted (unless it was answered meanwhile) and taken off the queue;
# the next `moa batch` of the same run queues it again.
FAIL = """
if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 0 then
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
end
redis.call('SREM', KEYS[2], ARGV[3])
redis.call('XACK', KEYS[4], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[4], ARGV[2])
return 1
"""

# KEYS: stream, workers. ARGV: group, consumer, worker info JSON, entry ids...
# A live worker's heartbeat: its info and last-seen time, and its entries' idle time reset so
# that nobody claims them while it works on them. An entry another worker has claimed in the
# meantime is left alone. Returns the ids this worker still holds.
RENEW = (
    _NOW
    + """
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3], 'seen:' .. ARGV[2], now)
local held = {}
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    table.insert(held, ARGV[i])
  end
end
return held
"""
)

# KEYS: workers. Returns Redis's clock (ms) and every worker's {consumer, info, seen ms}.
WORKERS = (
    _NOW
    + """
local out = {now}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 5) ~= 'seen:' then
    table.insert(out, all[i])
    table.insert(out, all[i + 1])
    table.insert(out, redis.call('HGET', KEYS[1], 'seen:' .. all[i]) or '0')
  end
end
return out
"""
)
