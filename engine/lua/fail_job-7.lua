--[[
  Finish an attempt with an error: record the reason and stack trace, then retry the job
  (`delayed` when the retry delay is positive; when it is 0, the end of `wait`, or
  `prioritized` by its priority) or fail it for good
  (`failed`, then the job's retention, bounded). Refused unless the caller holds the lease.
  The retry delay (backoff with jitter) is computed by the caller.

  KEYS[1] active    zset
  KEYS[2] wait      list (its sibling `prioritized`, zset, is derived from this key)
  KEYS[3] delayed   zset
  KEYS[4] failed    zset: score = finish time (ms)
  KEYS[5] meta      hash: `seq` counter
  KEYS[6] events    stream
  KEYS[7] marker    zset: wakes a worker for the retry

  ARGV[1] job key prefix
  ARGV[2] job id
  ARGV[3] lease token of the attempt
  ARGV[4] failed reason
  ARGV[5] stack trace ("" = none)
  ARGV[6] most stack traces kept per job
  ARGV[7] retry delay (ms): -1 = no retry (final), 0 = retry now, > 0 = retry after it
  ARGV[8] retention: keep at most this many failed jobs (-1 = no count limit)
  ARGV[9] retention: drop failed jobs older than this (ms, -1 = no age limit)
  ARGV[10] events stream max length
  ARGV[11] most jobs removed by retention per call

  Returns {now, 1 if retried else 0, attempts made}; 0 when this token already finished the
  job (a retried call); -2 when the lease is lost
]]
local activeKey, waitKey, delayedKey, failedKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local metaKey, eventsKey, markerKey = KEYS[5], KEYS[6], KEYS[7]
local jobPrefix, jobId, token, reason, stack = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local maxStack, retryDelay = tonumber(ARGV[6]), tonumber(ARGV[7])
local keepCount, keepAgeMs, maxEvents = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]
local batch = tonumber(ARGV[11])
-- `prioritized` is derived from the `wait` key rather than passed in KEYS (same hash tag,
-- so same slot, as job keys built from the prefix): see docs/ARCHITECTURE.md.
local prioritizedKey = string.sub(waitKey, 1, -5) .. "prioritized"
-- @include waiting
-- @include retention

local jobKey = jobPrefix .. jobId
if redis.call("HGET", jobKey, "tok") ~= token then
  return -2
end
if not redis.call("ZSCORE", activeKey, jobId) then
  return 0
end

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call("ZREM", activeKey, jobId)
local attempts = redis.call("HINCRBY", jobKey, "atm", 1)
redis.call("HSET", jobKey, "fr", reason)
if stack ~= "" then
  local traces = cjson.decode(redis.call("HGET", jobKey, "st") or "[]")
  traces[#traces + 1] = stack
  while #traces > maxStack do
    table.remove(traces, 1)
  end
  redis.call("HSET", jobKey, "st", cjson.encode(traces))
end

if retryDelay == 0 then
  pushWaiting(metaKey, waitKey, prioritizedKey, jobKey, jobId)
  redis.call("ZADD", markerKey, 0, "w")
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "retrying", "jobId", jobId,
    "attemptsMade", attempts, "delay", 0, "failedReason", reason)
  return {now, 1, attempts}
elseif retryDelay > 0 then
  local due = now + retryDelay
  redis.call("ZADD", delayedKey, due, jobId)
  redis.call("ZADD", markerKey, "LT", due, "d")
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "retrying", "jobId", jobId,
    "attemptsMade", attempts, "delay", retryDelay, "due", due, "failedReason", reason)
  return {now, 1, attempts}
end

redis.call("HSET", jobKey, "fon", now)
redis.call("ZADD", failedKey, now, jobId)
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "failed", "jobId", jobId,
  "attemptsMade", attempts, "failedReason", reason)

trimFinished(failedKey, jobPrefix, now, keepCount, keepAgeMs, batch)
return {now, 0, attempts}
