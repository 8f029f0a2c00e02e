--[[
  Fire the due ticks of one schedule, fenced by the leader lease: checks the caller's
  token and epoch, compare-and-sets the schedule's next fire time, enqueues one job per
  fired tick with the deterministic id `<schedule>:<tick ms>`, and records every fired or
  dropped tick in the schedule's ledger (which outlives job clean-up) and the events.
  Nothing is written unless every check passes, and no tick later than Redis TIME fires.

  KEYS[1] lease       string: leader token
  KEYS[2] meta        hash: `leaderEpoch`, `seq`
  KEYS[3] schedules   zset: schedule name -> next fire ms (+inf: paused or ended)
  KEYS[4] schedule    hash of this schedule (see upsert_schedule-3.lua)
  KEYS[5] ledger      stream of this schedule: tick, job, kind (fired / missed), reason
  KEYS[6] wait        list: jobs without priority (its sibling `prioritized`, zset, is
                      derived from this key)
  KEYS[7] active      zset
  KEYS[8] delayed     zset
  KEYS[9] events      stream
  KEYS[10] marker     zset: wakes one blocked worker

  ARGV[1] leader token
  ARGV[2] leader epoch
  ARGV[3] schedule name
  ARGV[4] definition fingerprint the caller computed from
  ARGV[5] expected next fire ms (the compare-and-set)
  ARGV[6] new next fire ms, or "" when the schedule has ended
  ARGV[7] ticks to fire, ascending, comma-separated ("" for none)
  ARGV[8] ticks dropped by the misfire policy, comma-separated ("" for none)
  ARGV[9] further dropped ticks not listed in ARGV[8] (counted, one summary event)
  ARGV[10] job key prefix
  ARGV[11] events stream max length (approximate)
  ARGV[12] ledger max length (approximate)

  Returns {fired, missed, now ms} or {code, 0, now ms} with code -4 not the leader,
  -5 schedule changed (gone, paused, redefined or next moved), -6 a tick is not due yet
]]
local leaseKey, metaKey, schedulesKey, scheduleKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ledgerKey, waitKey, activeKey, delayedKey = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local eventsKey, markerKey = KEYS[9], KEYS[10]
local token, epoch, name, fingerprint = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local expectedNext, newNext, fireList, missedList = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local extraMissed, jobPrefix = tonumber(ARGV[9]), ARGV[10]
local maxEvents, maxLedger = ARGV[11], ARGV[12]
-- `prioritized` is derived from the `wait` key rather than passed in KEYS (same hash tag,
-- so same slot, as job keys built from the prefix): see docs/ARCHITECTURE.md.
local prioritizedKey = string.sub(waitKey, 1, -5) .. "prioritized"

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if redis.call("GET", leaseKey) ~= token or redis.call("HGET", metaKey, "leaderEpoch") ~= epoch then
  return {-4, 0, now}
end
local s = redis.call("HMGET", scheduleKey, "fp", "next", "paused", "jobName", "data", "opts", "pri",
  "overlap", "lastJob")
if s[1] ~= fingerprint or s[2] ~= expectedNext or s[3] then
  return {-5, 0, now}
end

local function split(list)
  local out = {}
  for v in string.gmatch(list, "[^,]+") do
    out[#out + 1] = v
  end
  return out
end
local fires, missed = split(fireList), split(missedList)
if tonumber(expectedNext) > now then
  return {-6, 0, now}
end
for _, tick in ipairs(fires) do
  if tonumber(tick) > now then return {-6, 0, now} end
end
for _, tick in ipairs(missed) do
  if tonumber(tick) > now then return {-6, 0, now} end
end

local jobName, data, opts, priority = s[4], s[5], s[6], tonumber(s[7] or "0")
local overlapSkip, lastJob = s[8] == "skip", s[9]
local nMissed, nFired, lastTick = 0, 0, nil

local function miss(tick, reason)
  redis.call("XADD", ledgerKey, "MAXLEN", "~", maxLedger, "*", "tick", tick, "job", "",
    "kind", "missed", "reason", reason)
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "missed",
    "schedule", name, "tick", tick, "reason", reason)
  nMissed = nMissed + 1
end

-- Waiting (`wait` or `prioritized`), active or delayed. `wait` is a list (LPOS would be
-- O(N)): a job sits there when its hash exists and no zset holds it.
local function running(jobId)
  if not jobId or jobId == "" then
    return false
  end
  if redis.call("ZSCORE", activeKey, jobId) or redis.call("ZSCORE", delayedKey, jobId)
      or redis.call("ZSCORE", prioritizedKey, jobId) then
    return true
  end
  local f = redis.call("HMGET", jobPrefix .. jobId, "ts", "fon")
  return f[1] ~= false and f[2] == false
end

for _, tick in ipairs(missed) do
  miss(tick, "misfire")
end
if extraMissed > 0 then
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "missed",
    "schedule", name, "count", extraMissed, "reason", "misfire")
  nMissed = nMissed + extraMissed
end

for _, tick in ipairs(fires) do
  local jobId = name .. ":" .. tick
  local jobKey = jobPrefix .. jobId
  if overlapSkip and running(lastJob) then
    miss(tick, "overlap")
  elseif redis.call("EXISTS", jobKey) == 0 then
    local seq = redis.call("HINCRBY", metaKey, "seq", 1)
    redis.call("HSET", jobKey, "name", jobName, "data", data, "opts", opts, "ts", now, "atm", 0)
    if priority > 0 then
      redis.call("HSET", jobKey, "pri", priority)
    end
    if priority > 0 then
      redis.call("ZADD", prioritizedKey, priority * 4294967296 + (seq % 4294967296), jobId)
    else
      redis.call("RPUSH", waitKey, jobId)
    end
    redis.call("XADD", ledgerKey, "MAXLEN", "~", maxLedger, "*", "tick", tick, "job", jobId,
      "kind", "fired", "reason", "")
    redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "fired",
      "schedule", name, "tick", tick, "jobId", jobId)
    redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "waiting", "jobId", jobId)
    redis.call("ZADD", markerKey, 0, "w")
    lastJob, lastTick, nFired = jobId, tick, nFired + 1
  end
end

if newNext == "" then
  redis.call("ZADD", schedulesKey, "+inf", name)
else
  redis.call("ZADD", schedulesKey, newNext, name)
end
redis.call("HSET", scheduleKey, "next", newNext)
if nFired > 0 then
  redis.call("HSET", scheduleKey, "last", lastTick, "lastJob", lastJob, "lastFiredAt", now)
  redis.call("HINCRBY", scheduleKey, "fired", nFired)
end
if nMissed > 0 then
  redis.call("HINCRBY", scheduleKey, "missed", nMissed)
end
return {nFired, nMissed, now}
