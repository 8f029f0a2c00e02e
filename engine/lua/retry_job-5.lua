--[[
  Move a failed job back to `wait` with its attempts reset (an operator's retry).

  KEYS[1] meta      hash: `seq` counter
  KEYS[2] failed    zset
  KEYS[3] wait      zset
  KEYS[4] events    stream
  KEYS[5] marker    zset

  ARGV[1] job key prefix
  ARGV[2] job id
  ARGV[3] actor ("" when unknown)
  ARGV[4] events stream max length

  Returns 1, or -1 (no such job) / -3 (job is not failed)
]]
local metaKey, failedKey, waitKey, eventsKey, markerKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local jobPrefix, jobId, actor, maxEvents = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local jobKey = jobPrefix .. jobId
if redis.call("EXISTS", jobKey) == 0 then
  return -1
end
if not redis.call("ZSCORE", failedKey, jobId) then
  return -3
end
local seq = redis.call("HINCRBY", metaKey, "seq", 1)
local priority = tonumber(redis.call("HGET", jobKey, "pri") or "0")
redis.call("ZREM", failedKey, jobId)
redis.call("HSET", jobKey, "atm", 0)
redis.call("HDEL", jobKey, "fr", "st", "fon", "pon", "rv", "tok", "stc")
redis.call("ZADD", waitKey, priority * 4294967296 + (seq % 4294967296), jobId)
redis.call("ZADD", markerKey, 0, "w")
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "retried", "jobId", jobId,
  "by", actor)
return 1
