--[[
  Delete a job that no worker holds, with its log: from `wait`, `prioritized`, `delayed`,
  `completed` or `failed` (or an orphaned job, in none of them). An active job is refused,
  so a running handler never loses its hash under it. A resent copy of the call returns
  the first copy's reply (lua/include/request.lua); a refusal changes and records nothing.
  Everything is read and checked before the first write.

  Cost: O(log N) for the zsets; a job in the `wait` list is found and removed there in
  O(N) of the list's length (LPOS then LREM, some milliseconds of Redis time at 1M waiting
  jobs). Acceptable for an admin call, not for a hot path.

  KEYS[1]  wait        list
  KEYS[2]  prioritized zset
  KEYS[3]  active      zset
  KEYS[4]  delayed     zset
  KEYS[5]  completed   zset
  KEYS[6]  failed      zset
  KEYS[7]  events      stream
  KEYS[8]  job         hash of the job
  KEYS[9]  logs        list: the job's log lines
  KEYS[10] request     string: this call's reply record

  ARGV[1] job id
  ARGV[2] actor ("" when unknown)
  ARGV[3] events stream max length
  ARGV[4] reply record lifetime (ms): the resend window

  Returns {1, state it was removed from}, {-1, ""} (no such job) or {-3, "active"}
]]
local waitKey, prioritizedKey, activeKey, delayedKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local completedKey, failedKey, eventsKey = KEYS[5], KEYS[6], KEYS[7]
local jobKey, logsKey, requestKey = KEYS[8], KEYS[9], KEYS[10]
local jobId, actor, maxEvents, windowMs = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
-- @include request
-- @include jobstate
-- @include jobcall

local early, state = openJobCall(requestKey, jobKey, jobId,
  {waitKey, prioritizedKey, activeKey, delayedKey, completedKey, failedKey})
if early then
  return early
end
if state == "active" then
  return {-3, state}
end

if state == "waiting" then
  if redis.call("ZREM", prioritizedKey, jobId) == 0 then
    redis.call("LREM", waitKey, 1, jobId)
  end
elseif state == "delayed" then
  redis.call("ZREM", delayedKey, jobId)
elseif state == "completed" then
  redis.call("ZREM", completedKey, jobId)
elseif state == "failed" then
  redis.call("ZREM", failedKey, jobId)
end
redis.call("DEL", jobKey, logsKey)
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "removed", "jobId", jobId,
  "by", actor)
return recordReply(requestKey, windowMs, {1, state})
