--[[
  Run a schedule now under an idempotency key: the first call enqueues one out-of-band job
  of the schedule (its job name, data and options; the id the caller reserved from `seq`)
  and remembers the key for a bounded time; a later call with the same key (a client's
  retry after a 503 or a timeout, or a resend of this very call) returns that first job and
  changes nothing. Everything is read and checked before the first write.

  KEYS[1] schedule    hash of the schedule (see upsert_schedule-4.lua)
  KEYS[2] idempotency string: the first job's id, PX = the remembering time
  KEYS[3] meta        hash: `seq`
  KEYS[4] wait        list: jobs without priority
  KEYS[5] prioritized zset: jobs with a priority
  KEYS[6] events      stream
  KEYS[7] marker      zset: wakes one blocked worker
  KEYS[8] job         hash of the new job (`<prefix>job:<ARGV[1]>`)

  ARGV[1] the new job's id (reserved by the caller)
  ARGV[2] how long the key is remembered (ms)
  ARGV[3] events stream max length (approximate)
  ARGV[4] schedule name
  ARGV[5] actor (audit: `by` of the `manual` event)

  Returns {1, job id, now ms} enqueued; {0, the first job's id, now ms} the key was seen;
  {-1, "", now ms} no such schedule
]]
local scheduleKey, idemKey, metaKey, waitKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prioritizedKey, eventsKey, markerKey, jobKey = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local jobId, rememberMs, maxEvents, name, actor = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
-- @include waiting

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local first = redis.call("GET", idemKey)
if first then
  return {0, first, now}
end
local s = redis.call("HMGET", scheduleKey, "jobName", "data", "opts", "pri")
if not s[1] then
  return {-1, "", now}
end
if redis.call("EXISTS", jobKey) == 1 then
  return redis.error_reply("ERR run_schedule: job " .. jobId .. " exists (id not reserved?)")
end

local priority = tonumber(s[4] or "0")
redis.call("HSET", jobKey, "name", s[1], "data", s[2], "opts", s[3], "ts", now, "atm", 0)
if priority > 0 then
  redis.call("HSET", jobKey, "pri", priority)
end
pushWaitingAt(metaKey, waitKey, prioritizedKey, jobId, priority)
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "waiting", "jobId", jobId)
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "manual", "schedule", name,
  "jobId", jobId, "by", actor)
redis.call("ZADD", markerKey, 0, "w")
redis.call("SET", idemKey, jobId, "PX", rememberMs)
return {1, jobId, now}
