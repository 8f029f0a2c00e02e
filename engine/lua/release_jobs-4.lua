--[[
  Hand jobs back to `wait` at once (a worker closing before they finished), each only if
  the caller still holds its lease. They go to the front of their priority; the attempt
  does not count.

  KEYS[1] active    zset
  KEYS[2] wait      zset
  KEYS[3] events    stream
  KEYS[4] marker    zset: wakes another worker

  ARGV[1] job key prefix
  ARGV[2] events stream max length
  ARGV[3..] pairs: job id, lease token

  Returns the ids released
]]
local activeKey, waitKey, eventsKey, markerKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local jobPrefix, maxEvents = ARGV[1], ARGV[2]

local released = {}
for i = 3, #ARGV, 2 do
  local jobId, token = ARGV[i], ARGV[i + 1]
  local jobKey = jobPrefix .. jobId
  if redis.call("HGET", jobKey, "tok") == token and redis.call("ZSCORE", activeKey, jobId) then
    local priority = tonumber(redis.call("HGET", jobKey, "pri") or "0")
    redis.call("ZREM", activeKey, jobId)
    redis.call("HDEL", jobKey, "tok")
    redis.call("ZADD", waitKey, priority * 4294967296, jobId)
    redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "released", "jobId",
      jobId)
    released[#released + 1] = jobId
  end
end
if #released > 0 then
  redis.call("ZADD", markerKey, 0, "w")
end
return released
