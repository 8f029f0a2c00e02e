--[[
  Extend the leader lease, only for its holder (a bare PEXPIRE could extend someone
  else's lease and make two leaders: celery-redbeat #127).

  KEYS[1] lease     string: holder token

  ARGV[1] token
  ARGV[2] TTL (ms)

  Returns {1, now ms} when renewed, {0, now ms} when the caller no longer holds it
]]
local leaseKey = KEYS[1]
local token, ttl = ARGV[1], tonumber(ARGV[2])

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if redis.call("GET", leaseKey) ~= token then
  return {0, now}
end
redis.call("PEXPIRE", leaseKey, ttl)
return {1, now}
