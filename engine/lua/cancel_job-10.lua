--[[
  Cancel a job that has not finished (an operator's call): whatever structure holds it
  (`wait`, `prioritized`, `delayed` or `active`), it goes to `failed` at once with the
  given reason and is never retried, then the job's retention (removeOnFail, read from its
  `opts`). A running job's attempt ends here too (attempts made + 1): the hash records the
  cancelled attempt's token in `cxl` and the cancel is PUBLISHed on the queue's cancel
  channel, so the worker holding it stops the handler (at once when it hears the message;
  at its next lease renewal, which reports `cxl`, when it does not). Its lease token stays
  in the hash, so that worker's late finish finds the job outside `active` under its own
  token and changes nothing (complete_job / fail_job answer 0). A cancelled RUNNING job is
  never deleted by its own removeOnFail: true (keep none) here, so that renewal can still
  read `cxl`: it stays in `failed` until a count or age trim, or a clean, removes it.

  A resent copy of the call returns the first copy's reply (lua/include/request.lua): a
  resend would otherwise find the job failed and refuse. Everything is read and checked
  (retention victims with redis.pcall) before the first write; a refusal writes nothing.

  KEYS[1]  wait        list
  KEYS[2]  prioritized zset
  KEYS[3]  active      zset
  KEYS[4]  delayed     zset
  KEYS[5]  completed   zset
  KEYS[6]  failed      zset: score = finish time (ms)
  KEYS[7]  events      stream
  KEYS[8]  claims      zset: claims not yet confirmed
  KEYS[9]  job         hash of the job
  KEYS[10] request     string: this call's reply record

  ARGV[1] job key prefix (retention deletes older failed jobs by their id)
  ARGV[2] job id
  ARGV[3] failed reason ("cancelled by <actor>")
  ARGV[4] actor ("" when unknown)
  ARGV[5] events stream max length
  ARGV[6] reply record lifetime (ms): the resend window
  ARGV[7] cancel channel (pub/sub, not a key)
  ARGV[8] failed jobs kept when the job's options say nothing (the default retention)
  ARGV[9] most jobs removed by retention per call

  Returns {1, state it was in: waiting | delayed | active}; {-3, state} when it is not
  cancellable (completed, failed, orphaned); {-1, ""} when there is no such job
]]
local waitKey, prioritizedKey, activeKey, delayedKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local completedKey, failedKey, eventsKey, claimsKey = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local jobKey, requestKey = KEYS[9], KEYS[10]
local jobPrefix, jobId, reason, actor, maxEvents = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local windowMs, channel = tonumber(ARGV[6]), ARGV[7]
local defaultKeep, batch = tonumber(ARGV[8]), tonumber(ARGV[9])
-- @include request
-- @include jobstate
-- @include jobcall
-- @include batch
-- @include retention

-- READ everything first.
local early, state = openJobCall(requestKey, jobKey, jobId,
  {waitKey, prioritizedKey, activeKey, delayedKey, completedKey, failedKey})
if early then
  return early
end
if state ~= "waiting" and state ~= "delayed" and state ~= "active" then
  return {-3, state}
end
local f = redis.call("HMGET", jobKey, "tok", "atm", "opts")
local token, attempts = f[1], tonumber(f[2]) or 0
if state == "active" then
  attempts = attempts + 1
end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keepCount, keepAgeMs = retentionOf(f[3], "removeOnFail", defaultKeep)
local plan = retentionPlan(failedKey, jobPrefix, now, batch)
if keepCount == 0 and state ~= "active" then
  plan.drop(jobId)
else
  plan.add(jobId)
  plan.trim(keepCount > 0 and keepCount or -1, keepAgeMs)
end
plan.resolve()

-- WRITE.
if state == "active" then
  redis.call("ZREM", activeKey, jobId)
  redis.call("ZREM", claimsKey, jobId)
elseif state == "delayed" then
  redis.call("ZREM", delayedKey, jobId)
elseif redis.call("ZREM", prioritizedKey, jobId) == 0 then
  redis.call("LREM", waitKey, 1, jobId)
end
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "cancelled", "jobId", jobId,
  "by", actor, "prev", state)
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "failed", "jobId", jobId,
  "attemptsMade", attempts, "failedReason", reason)
if not plan.removed(jobId) then
  redis.call("HSET", jobKey, "atm", attempts, "fr", reason, "fon", now)
  if state == "active" then
    redis.call("HSET", jobKey, "cxl", token or "")
  end
end
plan.write()
if state == "active" and token then
  -- pcall: an ACL user without channel rights must not turn an applied cancel into an
  -- error reply (the worker then learns of it at its next lease renewal).
  redis.pcall("PUBLISH", channel, cjson.encode({jobId, token}))
end
return recordReply(requestKey, windowMs, {1, state})
