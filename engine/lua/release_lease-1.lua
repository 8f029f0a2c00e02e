--[[
  Give the leader lease up (graceful shutdown), only for its holder.

  KEYS[1] lease     string: holder token

  ARGV[1] token

  Returns 1 when released, 0 when the caller did not hold it
]]
local leaseKey = KEYS[1]
local token = ARGV[1]

if redis.call("GET", leaseKey) ~= token then
  return 0
end
redis.call("DEL", leaseKey)
return 1
