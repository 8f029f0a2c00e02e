--[[
  Move a failed job back to waiting with its attempts reset (an operator's retry): the end
  of `wait` (no priority) or `prioritized` (by its priority).

  KEYS[1] meta      hash: `seq` counter
  KEYS[2] failed    zset
  KEYS[3] wait      list (its sibling `prioritized`, zset, is derived from this key)
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
-- `prioritized` is derived from the `wait` key rather than passed in KEYS (same hash tag,
-- so same slot, as job keys built from the prefix): see docs/ARCHITECTURE.md.
local prioritizedKey = string.sub(waitKey, 1, -5) .. "prioritized"
-- @include waiting

local jobKey = jobPrefix .. jobId
if redis.call("EXISTS", jobKey) == 0 then
  return -1
end
if not redis.call("ZSCORE", failedKey, jobId) then
  return -3
end
redis.call("ZREM", failedKey, jobId)
redis.call("HSET", jobKey, "atm", 0)
redis.call("HDEL", jobKey, "fr", "st", "fon", "pon", "rv", "tok", "stc")
pushWaiting(metaKey, waitKey, prioritizedKey, jobKey, jobId)
redis.call("ZADD", markerKey, 0, "w")
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "retried", "jobId", jobId,
  "by", actor)
return 1
