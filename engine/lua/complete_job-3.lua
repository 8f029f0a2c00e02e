--[[
  Finish an attempt successfully: `active` -> `completed`, then apply the job's retention
  to `completed` (bounded). Refused unless the caller still holds the job's lease.

  KEYS[1] active    zset
  KEYS[2] completed zset: score = finish time (ms)
  KEYS[3] events    stream

  ARGV[1] job key prefix
  ARGV[2] job id
  ARGV[3] lease token of the attempt
  ARGV[4] return value (JSON)
  ARGV[5] retention: keep at most this many completed jobs (-1 = no count limit)
  ARGV[6] retention: drop completed jobs older than this (ms, -1 = no age limit)
  ARGV[7] events stream max length
  ARGV[8] most jobs removed by retention per call

  Returns {finished on (ms), duration (ms)}; 0 when this token already finished the job
  (a retried call); -2 when the lease is lost (token differs or the job is not active)
]]
local activeKey, completedKey, eventsKey = KEYS[1], KEYS[2], KEYS[3]
local jobPrefix, jobId, token, returnValue = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local keepCount, keepAgeMs, maxEvents = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local batch = tonumber(ARGV[8])

local jobKey = jobPrefix .. jobId
if redis.call("HGET", jobKey, "tok") ~= token then
  return -2
end
if not redis.call("ZSCORE", activeKey, jobId) then
  -- The token survives a finish (only a new claim, recovery or release replaces it), so a
  -- matching token outside `active` means this very call already ran.
  return 0
end

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local startedOn = tonumber(redis.call("HGET", jobKey, "pon") or now)
redis.call("ZREM", activeKey, jobId)
redis.call("HINCRBY", jobKey, "atm", 1)
redis.call("HSET", jobKey, "fon", now, "rv", returnValue)
redis.call("ZADD", completedKey, now, jobId)
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "completed", "jobId", jobId,
  "duration", now - startedOn)

local function drop(ids)
  for _, id in ipairs(ids) do
    redis.call("DEL", jobPrefix .. id, jobPrefix .. id .. ":logs")
  end
  if #ids > 0 then
    redis.call("ZREM", completedKey, unpack(ids))
  end
end
if keepAgeMs >= 0 then
  drop(redis.call("ZRANGEBYSCORE", completedKey, "-inf", "(" .. (now - keepAgeMs), "LIMIT", 0,
    batch))
end
if keepCount >= 0 then
  local excess = redis.call("ZCARD", completedKey) - keepCount
  if excess > 0 then
    drop(redis.call("ZRANGE", completedKey, 0, math.min(excess, batch) - 1))
  end
end
return {now, now - startedOn}
