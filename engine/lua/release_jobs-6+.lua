--[[
  Hand jobs back to waiting at once (a worker closing before they finished), each only if
  the caller still holds its lease. They go to the front: of `wait` (no priority, LPUSH,
  in the order given) or of their priority in `prioritized`; the attempt does not count.

  Error-atomic: every key is declared and read before the first write; a resend finds the
  tokens cleared and changes nothing.

  KEYS[1] active      zset
  KEYS[2] wait        list
  KEYS[3] prioritized zset
  KEYS[4] events      stream
  KEYS[5] marker      zset: wakes another worker
  KEYS[6] claims      zset: claims not yet confirmed
  KEYS[7..]           the hash of each job, in ARGV order (KEYS[6 + i] for the i-th)

  ARGV[1] events stream max length
  ARGV[2..] pairs: job id, lease token

  Returns the ids released
]]
local activeKey, waitKey, prioritizedKey = KEYS[1], KEYS[2], KEYS[3]
local eventsKey, markerKey, claimsKey = KEYS[4], KEYS[5], KEYS[6]
local maxEvents = ARGV[1]
local n = (#ARGV - 1) / 2
if n ~= #KEYS - 6 then
  return redis.error_reply("ERR release_jobs: one job hash per job expected in KEYS")
end
-- @include batch
-- @include waiting

-- READ.
local ids = {}
for i = 1, n do
  ids[i] = ARGV[2 * i]
end
local scores = zmscoreSliced(activeKey, ids)
local released, priorities, keys = {}, {}, {}
for i = 1, n do
  local f = redis.call("HMGET", KEYS[6 + i], "tok", "pri")
  if f[1] == ARGV[2 * i + 1] and scores[i] then
    released[#released + 1] = ids[i]
    priorities[#priorities + 1] = tonumber(f[2]) or 0
    keys[#keys + 1] = KEYS[6 + i]
  end
end

-- WRITE.
if #released > 0 then
  callSliced("ZREM", activeKey, released)
  callSliced("ZREM", claimsKey, released)
  for i, id in ipairs(released) do
    redis.call("HDEL", keys[i], "tok")
    redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "released", "jobId", id)
  end
  frontWaiting(waitKey, prioritizedKey, released, priorities)
  redis.call("ZADD", markerKey, 0, "w")
end
return released
