--[[
  Move a failed job back to waiting with its attempts reset (an operator's retry): the end
  of `wait` (no priority) or `prioritized` (by its priority). A resent copy of the call
  returns the first copy's reply (lua/include/request.lua); a refusal changes and records
  nothing. Everything is read and checked before the first write.

  KEYS[1]  meta        hash: `seq` counter
  KEYS[2]  wait        list
  KEYS[3]  prioritized zset
  KEYS[4]  active      zset
  KEYS[5]  delayed     zset
  KEYS[6]  completed   zset
  KEYS[7]  failed      zset
  KEYS[8]  events      stream
  KEYS[9]  marker      zset
  KEYS[10] job         hash of the job
  KEYS[11] request     string: this call's reply record

  ARGV[1] job id
  ARGV[2] actor ("" when unknown)
  ARGV[3] events stream max length
  ARGV[4] reply record lifetime (ms): the resend window

  Returns {1, "failed"} when retried, {-1, ""} (no such job) or {-3, state} (the job is not
  failed: `state` is where it is, a JobState value or "orphaned")
]]
local metaKey, waitKey, prioritizedKey, activeKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local delayedKey, completedKey, failedKey, eventsKey = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local markerKey, jobKey, requestKey = KEYS[9], KEYS[10], KEYS[11]
local jobId, actor, maxEvents, windowMs = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
-- @include request
-- @include waiting
-- @include jobstate
-- @include jobcall

local early, state = openJobCall(requestKey, jobKey, jobId,
  {waitKey, prioritizedKey, activeKey, delayedKey, completedKey, failedKey})
if early then
  return early
end
if state ~= "failed" then
  return {-3, state}
end
local priority = jobPriority(jobKey)

redis.call("ZREM", failedKey, jobId)
redis.call("HSET", jobKey, "atm", 0)
redis.call("HDEL", jobKey, "fr", "st", "fon", "pon", "rv", "tok", "stc")
pushWaitingAt(metaKey, waitKey, prioritizedKey, jobId, priority)
redis.call("ZADD", markerKey, 0, "w")
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "retried", "jobId", jobId,
  "by", actor)
return recordReply(requestKey, windowMs, {1, "failed"})
