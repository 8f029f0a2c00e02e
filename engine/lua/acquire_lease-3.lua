--[[
  Acquire the queue's scheduler leader lease, or re-confirm it for its current holder.
  A new holder gets the next fencing epoch; every fire call must present both.

  KEYS[1] lease     string: holder token, expires after the TTL (PX, relative: skew-proof)
  KEYS[2] meta      hash: `leaderEpoch` counter, `leaderSince` ms
  KEYS[3] events    stream

  ARGV[1] token (unique per lease object)
  ARGV[2] TTL (ms)
  ARGV[3] events stream max length (approximate)

  Returns {1, epoch, now ms, ttl ms} when the caller holds the lease,
          {0, current epoch, now ms, remaining ms} when someone else does
]]
local leaseKey, metaKey, eventsKey = KEYS[1], KEYS[2], KEYS[3]
local token, ttl, maxEvents = ARGV[1], tonumber(ARGV[2]), ARGV[3]

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local holder = redis.call("GET", leaseKey)
if holder == token then
  -- Our own lease (e.g. a renewal whose reply was lost): keep the epoch, nobody else held it.
  redis.call("PEXPIRE", leaseKey, ttl)
  return {1, tonumber(redis.call("HGET", metaKey, "leaderEpoch") or "0"), now, ttl}
end
if holder then
  return {0, tonumber(redis.call("HGET", metaKey, "leaderEpoch") or "0"), now,
    redis.call("PTTL", leaseKey)}
end
redis.call("SET", leaseKey, token, "PX", ttl)
local epoch = redis.call("HINCRBY", metaKey, "leaderEpoch", 1)
redis.call("HSET", metaKey, "leaderSince", now)
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "leader", "by", token,
  "epoch", epoch)
return {1, epoch, now, ttl}
