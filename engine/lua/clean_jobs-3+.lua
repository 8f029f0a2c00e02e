--[[
  Remove the given finished jobs (hash and log) from one finished set, each only if it is
  still there and finished at or before the cutoff: the caller lists them first (ZRANGE BY
  SCORE, bounded), so every key is declared. A resent copy of the call returns the first
  copy's reply (lua/include/request.lua). Everything is read and checked before the first
  write.

  KEYS[1]   set       zset `completed` or `failed`: score = finish time (ms)
  KEYS[2]   events    stream
  KEYS[3]   request   string: this call's reply record
  KEYS[4..] per job: its hash, then its log list (in the order of the ids in ARGV)

  ARGV[1] cutoff (ms): jobs finished at or before it are removed
  ARGV[2] state name for the event ("completed" / "failed")
  ARGV[3] actor ("" when unknown)
  ARGV[4] events stream max length
  ARGV[5] reply record lifetime (ms): the resend window
  ARGV[6..] job ids

  Returns the number of jobs removed
]]
local setKey, eventsKey, requestKey = KEYS[1], KEYS[2], KEYS[3]
local cutoff, state, actor = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local maxEvents, windowMs = ARGV[4], ARGV[5]
-- @include request

local prior = priorReply(requestKey)
if prior then
  return prior
end
local count = #ARGV - 5
if #KEYS ~= 3 + 2 * count then
  return redis.error_reply("ERR clean_jobs: " .. count .. " ids but " .. (#KEYS - 3) .. " job keys")
end

local ids, keys = {}, {}
for j = 1, count do
  local id = ARGV[5 + j]
  local score = redis.call("ZSCORE", setKey, id)
  if score and tonumber(score) <= cutoff then
    ids[#ids + 1] = id
    keys[#keys + 1] = KEYS[2 + 2 * j]
    keys[#keys + 1] = KEYS[3 + 2 * j]
  end
end

if #ids > 0 then
  redis.call("DEL", unpack(keys))
  redis.call("ZREM", setKey, unpack(ids))
end
-- A call given no ids is a clean that found nothing: it is audited too (count 0).
if #ids > 0 or count == 0 then
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "cleaned", "state", state,
    "count", #ids, "by", actor)
end
return recordReply(requestKey, windowMs, #ids)
