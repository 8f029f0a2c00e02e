--[[
  Pause or resume a queue for every instance. Workers check the flag inside the claim
  script, so once this returns no instance starts a new job of the queue.

  KEYS[1] meta      hash: `paused` flag
  KEYS[2] events    stream
  KEYS[3] marker    zset: on resume, wakes a blocked worker

  ARGV[1] "1" to pause, "0" to resume
  ARGV[2] actor (who asked; "" when unknown), kept in the event as an audit trail
  ARGV[3] events stream max length

  Returns 1 if the state changed, 0 if it already was so
]]
local metaKey, eventsKey, markerKey = KEYS[1], KEYS[2], KEYS[3]
local pause, actor, maxEvents = ARGV[1] == "1", ARGV[2], ARGV[3]

local was = redis.call("HEXISTS", metaKey, "paused") == 1
if pause then
  redis.call("HSET", metaKey, "paused", 1)
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "paused", "by", actor)
else
  redis.call("HDEL", metaKey, "paused")
  redis.call("ZADD", markerKey, 0, "w")
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "resumed", "by", actor)
end
if was == pause then
  return 0
end
return 1
