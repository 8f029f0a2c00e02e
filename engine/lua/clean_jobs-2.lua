--[[
  Remove up to `limit` finished jobs older than the grace period from one finished set.
  Callers loop until fewer than `limit` come back, so no call is unbounded.

  KEYS[1] set       zset `completed` or `failed`: score = finish time (ms)
  KEYS[2] events    stream

  ARGV[1] job key prefix
  ARGV[2] grace period (ms): jobs finished at or before now - grace are removed
  ARGV[3] limit (jobs per call)
  ARGV[4] state name for the event ("completed" / "failed")
  ARGV[5] actor ("" when unknown)
  ARGV[6] events stream max length

  Returns the number of jobs removed
]]
local setKey, eventsKey = KEYS[1], KEYS[2]
local jobPrefix, grace, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local state, actor, maxEvents = ARGV[4], ARGV[5], ARGV[6]

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Logs live in their own namespace (`logs:<id>`, beside `job:`): see QueueKeys.logs.
local logsPrefix = string.sub(jobPrefix, 1, -5) .. "logs:"
local ids = redis.call("ZRANGEBYSCORE", setKey, "-inf", now - grace, "LIMIT", 0, limit)
for _, id in ipairs(ids) do
  redis.call("DEL", jobPrefix .. id, logsPrefix .. id)
end
if #ids > 0 then
  redis.call("ZREM", setKey, unpack(ids))
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "cleaned", "state", state,
    "count", #ids, "by", actor)
end
return #ids
