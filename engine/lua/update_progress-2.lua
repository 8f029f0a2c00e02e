--[[
  Set a running job's progress. Refused unless the caller holds the job's lease.

  KEYS[1] active    zset
  KEYS[2] events    stream

  ARGV[1] job key prefix
  ARGV[2] job id
  ARGV[3] lease token
  ARGV[4] progress (JSON: a number 0..100 or any JSON value)
  ARGV[5] events stream max length

  Returns 1, or -2 when the lease is lost
]]
local activeKey, eventsKey = KEYS[1], KEYS[2]
local jobPrefix, jobId, token, progress, maxEvents = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local jobKey = jobPrefix .. jobId
if redis.call("HGET", jobKey, "tok") ~= token or not redis.call("ZSCORE", activeKey, jobId) then
  return -2
end
redis.call("HSET", jobKey, "prog", progress)
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "progress", "jobId", jobId,
  "progress", progress)
return 1
