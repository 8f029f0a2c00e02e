--[[
  Claim up to `count` ready jobs for one worker, each with a per-attempt lease token.

  In order: (1) promote due `delayed` jobs (bounded batch) to the end of `wait` (no
  priority) or to `prioritized` (by their `pri`); (2) if the queue is paused, claim
  nothing; (3) honour the queue's global rate limit (a sliding window of start times in
  `limiter`); (4) pop from `wait` first (LPOP), then from `prioritized` (ZPOPMIN), stamp
  each job with a fresh token and put it in `active` with score = lease deadline; (5) if
  jobs still wait, re-arm the `w` marker so another blocked worker wakes (cascade).

  KEYS[1] meta      hash: `seq` counter, `paused` flag
  KEYS[2] wait      list: waiting jobs without priority, FIFO (its sibling `prioritized`,
                    zset: score = priority * 2^32 + sequence, is derived from this key)
  KEYS[3] delayed   zset: score = due time (ms)
  KEYS[4] active    zset: score = lease deadline (ms)
  KEYS[5] events    stream
  KEYS[6] marker    zset: wake-ups for blocked workers
  KEYS[7] limiter   zset: start times of the current rate-limit window (member id:attempt)

  ARGV[1] job key prefix
  ARGV[2] worker id (the token is `<worker id>:<attempts started>`)
  ARGV[3] count: most jobs to claim
  ARGV[4] lease duration (ms)
  ARGV[5] events stream max length
  ARGV[6] rate limit: most starts per window (0 = no limit)
  ARGV[7] rate limit window (ms)
  ARGV[8] most delayed jobs promoted per call

  Returns {now, paused (0/1), rate-limited wait (ms, 0 = not limited), next delayed due time
  (ms, -1 = none), jobs} where jobs is a list of
  {id, token, name ("" = default), data, opts ("" = none), attempts made, created ts,
  stalled count, progress ("" = none)}
]]
local metaKey, waitKey, delayedKey, activeKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local eventsKey, markerKey, limiterKey = KEYS[5], KEYS[6], KEYS[7]
local jobPrefix, workerId, count, leaseMs = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local maxEvents, rateMax, rateMs = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local promoteBatch = tonumber(ARGV[8])
-- `prioritized` is derived from the `wait` key rather than passed in KEYS (same hash tag,
-- so same slot, as job keys built from the prefix): see docs/ARCHITECTURE.md.
local prioritizedKey = string.sub(waitKey, 1, -5) .. "prioritized"

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local due = redis.call("ZRANGEBYSCORE", delayedKey, "-inf", now, "LIMIT", 0, promoteBatch)
if #due > 0 then
  local seq = redis.call("HINCRBY", metaKey, "seq", #due) - #due
  local listed = {}
  for i, id in ipairs(due) do
    local priority = tonumber(redis.call("HGET", jobPrefix .. id, "pri") or "0")
    if priority > 0 then
      redis.call("ZADD", prioritizedKey, priority * 4294967296 + ((seq + i) % 4294967296), id)
    else
      listed[#listed + 1] = id
    end
  end
  if #listed > 0 then
    redis.call("RPUSH", waitKey, unpack(listed))
  end
  redis.call("ZREM", delayedKey, unpack(due))
end

local nextDue = -1
local first = redis.call("ZRANGE", delayedKey, 0, 0, "WITHSCORES")
if first[2] then
  nextDue = tonumber(first[2])
end

if redis.call("HEXISTS", metaKey, "paused") == 1 then
  return {now, 1, 0, nextDue, {}}
end
local listLen = redis.call("LLEN", waitKey)
if listLen == 0 and redis.call("ZCARD", prioritizedKey) == 0 then
  return {now, 0, 0, nextDue, {}}
end

if rateMax > 0 then
  redis.call("ZREMRANGEBYSCORE", limiterKey, "-inf", now - rateMs)
  local allowed = rateMax - redis.call("ZCARD", limiterKey)
  if allowed <= 0 then
    local oldest = redis.call("ZRANGE", limiterKey, 0, 0, "WITHSCORES")
    return {now, 0, math.max(tonumber(oldest[2]) + rateMs - now, 1), nextDue, {}}
  end
  count = math.min(count, allowed)
end

-- Jobs without priority run first (as in BullMQ), then by priority and sequence.
local popped = {}
if listLen > 0 then
  popped = redis.call("LPOP", waitKey, count)
end
if #popped < count then
  local ranked = redis.call("ZPOPMIN", prioritizedKey, count - #popped)
  for i = 1, #ranked, 2 do
    popped[#popped + 1] = ranked[i]
  end
end
local jobs = {}
for _, id in ipairs(popped) do
  local jobKey = jobPrefix .. id
  local f = redis.call("HMGET", jobKey, "name", "data", "opts", "atm", "ts", "stc", "prog")
  -- Every job hash has `ts`; an id without one can only come from outside the engine:
  -- drop it rather than run it. Absent fields are defaults (see add_job-5.lua).
  if f[5] then
    local ats = redis.call("HINCRBY", jobKey, "ats", 1)
    local token = workerId .. ":" .. ats
    redis.call("HSET", jobKey, "tok", token, "pon", now)
    redis.call("ZADD", activeKey, now + leaseMs, id)
    if rateMax > 0 then
      redis.call("ZADD", limiterKey, now, id .. ":" .. ats)
    end
    redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "active", "jobId", id,
      "worker", workerId)
    jobs[#jobs + 1] = {id, token, f[1] or "", f[2] or "null", f[3] or "", f[4] or "0", f[5],
      f[6] or "0", f[7] or ""}
  end
end
if rateMax > 0 then
  redis.call("PEXPIRE", limiterKey, rateMs)
end

if redis.call("LLEN", waitKey) > 0 or redis.call("ZCARD", prioritizedKey) > 0 then
  redis.call("ZADD", markerKey, 0, "w")
end
return {now, 0, 0, nextDue, jobs}
