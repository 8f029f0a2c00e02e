--[[
  Add one job: a new hash plus an entry in `wait` (or `delayed` when it has a delay).
  A fixed job id that already exists returns the existing job and writes nothing.

  KEYS[1] meta      hash: `seq` counter, `paused` flag
  KEYS[2] wait      zset: score = priority * 2^32 + sequence
  KEYS[3] delayed   zset: score = due time (ms)
  KEYS[4] events    stream
  KEYS[5] marker    zset: wakes one blocked worker

  ARGV[1] job key prefix (`<prefix>:{<queue>}:job:`)
  ARGV[2] fixed job id, or "" to take the next sequence number
  ARGV[3] job name
  ARGV[4] data (JSON)
  ARGV[5] opts (JSON)
  ARGV[6] delay (ms, >= 0)
  ARGV[7] priority (0 = none, 1 = highest)
  ARGV[8] events stream max length (approximate)

  Returns {job id, 1 if created or 0 if the fixed id already existed, now (ms)}
]]
local metaKey, waitKey, delayedKey, eventsKey, markerKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local jobPrefix, fixedId, name, data, opts = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local delay, priority, maxEvents = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local jobId = fixedId
if fixedId ~= "" and redis.call("EXISTS", jobPrefix .. fixedId) == 1 then
  return {fixedId, 0, now}
end
local seq = redis.call("HINCRBY", metaKey, "seq", 1)
if fixedId == "" then
  jobId = tostring(seq)
end

local jobKey = jobPrefix .. jobId
-- Defaults are left out (no `name` for the default name, no `opts` for "{}", `atm` absent
-- means 0): every byte of a waiting job is multiplied by the queue length.
local fields = {"data", data, "ts", now}
if name ~= "__default__" then
  fields[#fields + 1] = "name"
  fields[#fields + 1] = name
end
if opts ~= "{}" then
  fields[#fields + 1] = "opts"
  fields[#fields + 1] = opts
end
if priority > 0 then
  fields[#fields + 1] = "pri"
  fields[#fields + 1] = priority
end
redis.call("HSET", jobKey, unpack(fields))

if delay > 0 then
  local due = now + delay
  redis.call("ZADD", delayedKey, due, jobId)
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "delayed", "jobId", jobId,
    "delay", delay)
  -- Wake a worker so it re-arms its blocking timeout for this (maybe earlier) due time.
  redis.call("ZADD", markerKey, due, "d")
else
  redis.call("ZADD", waitKey, priority * 4294967296 + (seq % 4294967296), jobId)
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "waiting", "jobId", jobId)
  redis.call("ZADD", markerKey, 0, "w")
end
return {jobId, 1, now}
