--[[
  Pause or resume a queue for every instance. Workers check the flag inside the claim
  script, so once this returns no instance starts a new job of the queue. A resent copy of
  the call returns the first copy's reply (lua/include/request.lua), so "changed" stays
  true for the caller and the audit trail holds one event.

  KEYS[1] meta      hash: `paused` flag
  KEYS[2] events    stream
  KEYS[3] marker    zset: on resume, wakes a blocked worker
  KEYS[4] request   string: this call's reply record

  ARGV[1] "1" to pause, "0" to resume
  ARGV[2] actor (who asked; "" when unknown), kept in the event as an audit trail
  ARGV[3] events stream max length
  ARGV[4] reply record lifetime (ms): the resend window

  Returns 1 if the state changed, 0 if it already was so
]]
local metaKey, eventsKey, markerKey, requestKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local pause, actor, maxEvents, windowMs = ARGV[1] == "1", ARGV[2], ARGV[3], ARGV[4]
-- @include request

local prior = priorReply(requestKey)
if prior then
  return prior
end
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
  return recordReply(requestKey, windowMs, 0)
end
return recordReply(requestKey, windowMs, 1)
