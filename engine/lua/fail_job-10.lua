--[[
  Finish an attempt with an error: record the reason and stack trace, then retry the job
  (`delayed` when the retry delay is positive; when it is 0, the end of `wait`, or
  `prioritized` by its priority) or fail it for good (`failed`, then the job's retention,
  bounded; keepCount 0, Bull's removeOnFail: true, deletes this job only). Refused unless
  the caller holds the lease. The retry delay (backoff with jitter) is computed by the
  caller. A job failed for good that opened a deduplication window without ttl closes it
  (lua/include/dedup.lua).

  Error-atomic: every key it may write is declared or read (redis.pcall) before the first
  write; a resend of the same call changes nothing (the token check answers 0).

  KEYS[1] active      zset
  KEYS[2] wait        list
  KEYS[3] prioritized zset
  KEYS[4] delayed     zset
  KEYS[5] failed      zset: score = finish time (ms)
  KEYS[6] meta        hash: `seq` counter
  KEYS[7] events      stream
  KEYS[8] marker      zset: wakes a worker for the retry
  KEYS[9] claims      zset: claims not yet confirmed (a finish confirms)
  KEYS[10] the job's hash

  ARGV[1] job key prefix (retention deletes older jobs by their id)
  ARGV[2] job id
  ARGV[3] lease token of the attempt
  ARGV[4] failed reason
  ARGV[5] stack trace ("" = none)
  ARGV[6] most stack traces kept per job
  ARGV[7] retry delay (ms): -1 = no retry (final), 0 = retry now, > 0 = retry after it
  ARGV[8] retention: keep at most this many failed jobs (-1 = no count limit, 0 = delete
          this job)
  ARGV[9] retention: drop failed jobs older than this (ms, -1 = no age limit)
  ARGV[10] events stream max length
  ARGV[11] most jobs removed by retention per call

  Returns {now, 1 if retried else 0, attempts made}; 0 when this token already finished the
  job (a resent call, also after the retried job was claimed again: the hash's `ftok`); -1 when the job no longer exists (a resent call whose first copy
  deleted it by retention, or a removed job); -2 when the lease is lost
]]
local activeKey, waitKey, prioritizedKey, delayedKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local failedKey, metaKey, eventsKey, markerKey = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local claimsKey, jobKey = KEYS[9], KEYS[10]
local jobPrefix, jobId, token, reason, stack = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local maxStack, retryDelay = tonumber(ARGV[6]), tonumber(ARGV[7])
local keepCount, keepAgeMs, maxEvents = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]
local batch = tonumber(ARGV[11])
-- @include batch
-- @include waiting
-- @include retention
-- @include dedup

-- READ everything first.
local f = redis.call("HMGET", jobKey, "tok", "atm", "st", "pri", "dd", "ftok")
if f[1] ~= token then
  -- No hash at all: the job is gone (this very call ran first and its retention deleted
  -- it, or it was removed): not a lost lease.
  if not f[1] and redis.call("EXISTS", jobKey) == 0 then
    return -1
  end
  -- This token's failure was recorded and the retried job claimed again since (the
  -- client resent [fail, claim] whose first copy ran both): already done.
  if f[6] == token then
    return 0
  end
  return -2
end
if not redis.call("ZSCORE", activeKey, jobId) then
  return 0
end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local attempts = (tonumber(f[2]) or 0) + 1
local traces = nil
if stack ~= "" then
  local ok, decoded = pcall(cjson.decode, f[3] or "[]")
  traces = (ok and type(decoded) == "table") and decoded or {}
  traces[#traces + 1] = stack
  while #traces > maxStack do
    table.remove(traces, 1)
  end
end
local plan, release = nil, nil
if retryDelay < 0 then
  release = dedupRelease(jobPrefix, jobId, f[5])
  plan = retentionPlan(failedKey, jobPrefix, now, batch)
  if keepCount == 0 then
    plan.drop(jobId)
  else
    plan.add(jobId)
    plan.trim(keepCount, keepAgeMs)
  end
  plan.resolve()
end

-- WRITE.
redis.call("ZREM", activeKey, jobId)
redis.call("ZREM", claimsKey, jobId)
if release then
  redis.call("DEL", release)
end
if plan and plan.removed(jobId) then
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "failed", "jobId", jobId,
    "attemptsMade", attempts, "failedReason", reason)
  plan.write()
  return {now, 0, attempts}
end
-- `ftok`: the attempt whose failure this was, so that a resend of this call after the
-- retry was claimed again (new `tok`) is known as done, not as a lost lease.
redis.call("HSET", jobKey, "atm", attempts, "fr", reason, "ftok", token)
if traces then
  redis.call("HSET", jobKey, "st", cjson.encode(traces))
end

if retryDelay == 0 then
  appendWaiting(metaKey, waitKey, prioritizedKey, {jobId}, {tonumber(f[4]) or 0})
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
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "failed", "jobId", jobId,
  "attemptsMade", attempts, "failedReason", reason)
plan.write()
return {now, 0, attempts}
