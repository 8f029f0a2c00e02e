--[[
  Hand jobs back to `wait` at once (a worker closing before they finished), each only if
  the caller still holds its lease. They go to the front: of `wait` (no priority, LPUSH,
  in the order given) or of their priority in `prioritized`; the attempt does not count.

  KEYS[1] active    zset
  KEYS[2] wait      list (its sibling `prioritized`, zset, is derived from this key)
  KEYS[3] events    stream
  KEYS[4] marker    zset: wakes another worker

  ARGV[1] job key prefix
  ARGV[2] events stream max length
  ARGV[3..] pairs: job id, lease token

  Returns the ids released
]]
local activeKey, waitKey, eventsKey, markerKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local jobPrefix, maxEvents = ARGV[1], ARGV[2]
-- `prioritized` is derived from the `wait` key rather than passed in KEYS (same hash tag,
-- so same slot, as job keys built from the prefix): see docs/ARCHITECTURE.md.
local prioritizedKey = string.sub(waitKey, 1, -5) .. "prioritized"
-- @include waiting

local released = {}
for i = 3, #ARGV, 2 do
  local jobId, token = ARGV[i], ARGV[i + 1]
  local jobKey = jobPrefix .. jobId
  if redis.call("HGET", jobKey, "tok") == token and redis.call("ZSCORE", activeKey, jobId) then
    redis.call("ZREM", activeKey, jobId)
    redis.call("HDEL", jobKey, "tok")
    redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "released", "jobId",
      jobId)
    released[#released + 1] = jobId
  end
end
if #released > 0 then
  pushFront(jobPrefix, waitKey, prioritizedKey, released)
  redis.call("ZADD", markerKey, 0, "w")
end
return released
