--[[
  Cancel a job that has not finished (an operator's call): whatever structure holds it
  (`wait`, `prioritized`, `delayed` or `active`), it goes to `failed` at once with the
  given reason, never retried. A running job's attempt ends here too (attempts made + 1):
  the hash records the cancelled attempt's token in `cxl` and the cancel is PUBLISHed on
  the queue's cancel channel, so the worker holding it stops the handler (at once when it
  hears the message; at its next lease renewal, which reports the job, when it does not).
  Its lease token stays in the hash, so that worker's late finish finds the job outside
  `active` with its own token and changes nothing (complete_job / fail_job answer 0).

  Not idempotent by construction (a resend would find the job failed and refuse): the
  first copy records its reply in the request key (include/request.lua), later copies
  return it.

  KEYS[1] wait      list
  KEYS[2] prioritized zset
  KEYS[3] delayed   zset
  KEYS[4] active    zset
  KEYS[5] completed zset
  KEYS[6] failed    zset: score = finish time (ms)
  KEYS[7] events    stream
  KEYS[8] request   string: this call's reply record (QueueKeys.request)
  KEYS[9..] the job's hash (exactly one)

  ARGV[1] job key prefix (retention removes other finished jobs by it)
  ARGV[2] job id
  ARGV[3] failed reason ("cancelled by <actor>")
  ARGV[4] actor ("" when unknown)
  ARGV[5] events stream max length
  ARGV[6] reply record lifetime (ms)
  ARGV[7] cancel channel (pub/sub, not a key)
  ARGV[8] retention: keep at most this many failed jobs (-1 = no count limit)
  ARGV[9] retention: drop failed jobs older than this (ms, -1 = no age limit)
  ARGV[10] most jobs removed by retention per call

  Returns {1, state it was in: waiting | delayed | active}; {-3, state} when it is not
  cancellable (completed, failed; "" if found in no structure); -1 when there is no job
]]
if #KEYS ~= 9 then
  return redis.error_reply("cancel_job takes exactly one job key after the 8 fixed keys")
end
local waitKey, prioritizedKey, delayedKey, activeKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local completedKey, failedKey, eventsKey, requestKey = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local jobKey = KEYS[#KEYS]  -- the tail: the job's hash
local jobPrefix, jobId, reason, actor, maxEvents = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local windowMs, channel = tonumber(ARGV[6]), ARGV[7]
local keepCount, keepAgeMs, batch = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
-- @include request
-- @include retention

local prior = priorReply(requestKey)
if prior then
  return prior
end
if jobKey ~= jobPrefix .. jobId then
  return redis.error_reply("cancel_job: the job key does not match the prefix and id")
end
if redis.call("EXISTS", jobKey) == 0 then
  return -1
end
if redis.call("ZSCORE", completedKey, jobId) then
  return {-3, "completed"}
end
if redis.call("ZSCORE", failedKey, jobId) then
  return {-3, "failed"}
end
local state, from = nil, nil
if redis.call("ZSCORE", activeKey, jobId) then
  state, from = "active", activeKey
elseif redis.call("ZSCORE", delayedKey, jobId) then
  state, from = "delayed", delayedKey
elseif redis.call("ZSCORE", prioritizedKey, jobId) then
  state, from = "waiting", prioritizedKey
end
local token = redis.call("HGET", jobKey, "tok")

-- Every check is done: the writes start here. A job in no zset waits in the list; LREM
-- there is O(N) in its length (an admin call, like remove_job) and writes nothing if the
-- job is not there either.
if state then
  redis.call("ZREM", from, jobId)
elseif redis.call("LREM", waitKey, 1, jobId) == 1 then
  state = "waiting"
else
  return {-3, ""}
end

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local attempts
if state == "active" then
  attempts = redis.call("HINCRBY", jobKey, "atm", 1)
  redis.call("HSET", jobKey, "cxl", token or "")
else
  attempts = tonumber(redis.call("HGET", jobKey, "atm") or "0")
end
redis.call("HSET", jobKey, "fr", reason, "fon", now)
if state == "active" then
  -- Retention makes room BEFORE the job joins `failed`, so a cancelled running job keeps
  -- its hash (and `cxl`) until the next failure's trim at the earliest: the lease renewal
  -- of a worker that missed the message reads `cxl` to learn why it lost the job. (With
  -- removeOnFail: true it therefore stays in `failed` until then.)
  trimFinished(failedKey, jobPrefix, now, keepCount > 0 and keepCount - 1 or keepCount,
    keepAgeMs, batch)
  redis.call("ZADD", failedKey, now, jobId)
else
  redis.call("ZADD", failedKey, now, jobId)
  trimFinished(failedKey, jobPrefix, now, keepCount, keepAgeMs, batch)
end
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "cancelled", "jobId", jobId,
  "by", actor, "prev", state)
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "failed", "jobId", jobId,
  "attemptsMade", attempts, "failedReason", reason)
if state == "active" and token then
  -- pcall: an ACL user without channel rights must not turn an applied cancel into an
  -- error reply (the worker then learns of it at its next lease renewal).
  redis.pcall("PUBLISH", channel, cjson.encode({jobId, token}))
end
return recordReply(requestKey, windowMs, {1, state})
