"""The Lua scripts of the shared limiter: each step is one script, so it is atomic in Redis.

Times are Redis's own clock (`TIME`, in milliseconds): the workers' clocks need not agree.
A worker passes the *age* of a call (how long ago it was sent, by its own clock) rather than
a timestamp. Every key a script touches has the same hash tag, `{moa:KEY}`, so the scripts
run on Redis Cluster too. Idle state expires: nothing needs cleaning up.
"""

from __future__ import annotations

# A Lua number a script returns reaches the client as an integer: scripts return whole ms.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
"""

# reserve(state, sent, configured rpm (0: none), tpm (0: none), tokens) books one request
# (and its tokens) on the GCRA schedules; returns {ms to wait before sending, ms between
# requests at the current rate (0: no rate)}.
_RESERVE = """
local function reserve(state, sent, conf_rpm, tpm, tokens)
  local s = redis.call('HMGET', state, 'rpm', 'tat_req', 'tat_tok', 'paused_until')
  local rpm = tonumber(s[1]) or tonumber(conf_rpm)
  tpm, tokens = tonumber(tpm), tonumber(tokens)
  local start = math.max(now, tonumber(s[4]) or 0)
  local wait = start - now
  local interval = 0
  if rpm > 0 then
    interval = 60000 / rpm
    -- No burst, unlike the per-process limiter: at a rate just under a provider's limit,
    -- the requests of a burst and the jitter of many workers would tip it over.
    local tat = math.max(tonumber(s[2]) or 0, start)
    wait = math.max(wait, tat - now)
    redis.call('HSET', state, 'tat_req', tat + interval)
  end
  if tpm > 0 and tokens > 0 then
    local tat = math.max(tonumber(s[3]) or 0, start)
    wait = math.max(wait, tat - 1000 - now)
    redis.call('HSET', state, 'tat_tok', tat + 60000 * tokens / tpm)
  end
  local seq = redis.call('HINCRBY', state, 'seq', 1)
  redis.call('ZADD', sent, now + wait, seq)
  redis.call('ZREMRANGEBYSCORE', sent, '-inf', now - 60000)
  redis.call('PEXPIRE', state, 3600000)
  redis.call('PEXPIRE', sent, 120000)
  return {math.ceil(wait), math.floor(interval)}
end
"""

# acquire(slots, max concurrency, lease ms, lease id) takes a slot (returns -1) or says in
# how many ms the earliest lease runs out.
_ACQUIRE = """
local function acquire(slots, cap, lease, id)
  lease = tonumber(lease)
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  if redis.call('ZCARD', slots) < tonumber(cap) then
    redis.call('ZADD', slots, now + lease, id)
    redis.call('PEXPIRE', slots, 2 * lease)
    return -1
  end
  local first = redis.call('ZRANGE', slots, 0, 0, 'WITHSCORES')
  return math.ceil(tonumber(first[2]) - now)
end
"""

# KEYS: state, sent. ARGV: configured rpm, tpm, tokens. Returns reserve's answer.
RESERVE = _NOW + _RESERVE + "return reserve(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])\n"

# KEYS: slots, state, sent. ARGV: max concurrency, lease ms, lease id, configured rpm, tpm,
# tokens. A slot and, once it has one, a booking, in one round trip: {-1, wait ms, interval
# ms}, or {ms until the earliest lease runs out} when every slot is taken.
ACQUIRE_AND_RESERVE = (
    _NOW
    + _RESERVE
    + _ACQUIRE
    + """
local free_in = acquire(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
if free_in >= 0 then return {free_in} end
local booked = reserve(KEYS[2], KEYS[3], ARGV[4], ARGV[5], ARGV[6])
return {-1, booked[1], booked[2]}
"""
)

# KEYS: slots. ARGV: lease ms, lease ids... Extends the leases still held (an expired one is
# gone: its slot may already serve another worker).
RENEW = (
    _NOW
    + """
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], 2 * lease)
return #ARGV - 1
"""
)

# KEYS: state, ok. ARGV: age ms, ceiling rpm (0: none), additive step, step fraction.
# A success: remember it (for a first estimate) and raise a learned rate by one step.
SUCCESS = (
    _NOW
    + """
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('ZADD', KEYS[2], now - tonumber(ARGV[1]), seq)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000)
redis.call('PEXPIRE', KEYS[2], 120000)
local rpm = tonumber(redis.call('HGET', KEYS[1], 'rpm'))
if rpm then
  local ceiling = tonumber(ARGV[2])
  local base = rpm
  if ceiling > 0 then base = ceiling end
  rpm = rpm + math.max(tonumber(ARGV[3]), tonumber(ARGV[4]) * base)
  if ceiling > 0 then rpm = math.min(ceiling, rpm) end
  redis.call('HSET', KEYS[1], 'rpm', rpm)
end
redis.call('PEXPIRE', KEYS[1], 3600000)
return 1
"""
)

# KEYS: state, ok, sent. ARGV: age ms, Retry-After ms (-1: none), decrease, configured rpm.
# A 429: pause everyone for Retry-After and cut the shared rate, once per burst of 429s; with
# no rate yet, estimate one from what the server accepted in the last minute.
THROTTLED = (
    _NOW
    + """
local sent_at, retry_after = now - tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('HINCRBY', KEYS[1], 'throttled', 1)
redis.call('PEXPIRE', KEYS[1], 3600000)
if retry_after >= 0 then
  local paused = tonumber(redis.call('HGET', KEYS[1], 'paused_until')) or 0
  redis.call('HSET', KEYS[1], 'paused_until', math.max(paused, now + retry_after))
end
if sent_at < (tonumber(redis.call('HGET', KEYS[1], 'decreased_at')) or -1) then
  return 0
end
redis.call('HSET', KEYS[1], 'decreased_at', now)
local rpm = tonumber(redis.call('HGET', KEYS[1], 'rpm'))
if not rpm and tonumber(ARGV[4]) > 0 then rpm = tonumber(ARGV[4]) end
if rpm then
  rpm = rpm * tonumber(ARGV[3])
else
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 60000)
  local accepted = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local ahead = retry_after
  if ahead < 0 then ahead = 1000 end
  if #accepted > 0 then
    local window = now - tonumber(accepted[2]) + ahead
    rpm = 0.95 * redis.call('ZCARD', KEYS[2]) * 60000 / math.max(window, 1)
  else
    local sent = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    rpm = tonumber(ARGV[3])
    if #sent > 0 then
      local span = math.max(1000, now - tonumber(sent[2]))
      rpm = rpm * redis.call('ZCARD', KEYS[3]) * 60000 / span
    end
  end
end
redis.call('HSET', KEYS[1], 'rpm', math.max(1, rpm))
return 1
"""
)
