--[[
  Set a running job's progress. Refused unless the caller holds the job's lease. Setting
  the value it already has writes nothing and emits no event, so a resent call (or a
  repeated value) never doubles the `progress` event.

  KEYS[1] active    zset
  KEYS[2] events    stream
  KEYS[3] the job's hash

  ARGV[1] job id
  ARGV[2] lease token
  ARGV[3] progress (JSON: a number 0..100 or any JSON value)
  ARGV[4] events stream max length

  Returns 1 (set), 0 (already that value), or -2 when the lease is lost
]]
local activeKey, eventsKey, jobKey = KEYS[1], KEYS[2], KEYS[3]
local jobId, token, progress, maxEvents = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local f = redis.call("HMGET", jobKey, "tok", "prog")
if f[1] ~= token or not redis.call("ZSCORE", activeKey, jobId) then
  return -2
end
if f[2] == progress then
  return 0
end
redis.call("HSET", jobKey, "prog", progress)
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "progress", "jobId", jobId,
  "progress", progress)
return 1
