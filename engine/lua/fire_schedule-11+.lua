--[[
  Fire the due ticks of one schedule, fenced by the leader lease: checks the caller's
  token and epoch, compare-and-sets the schedule's next fire time, enqueues one job per
  fired tick with the deterministic id `<schedule>:<tick ms>`, and records every fired or
  dropped tick in the schedule's ledger (which outlives job clean-up) and the events.
  Everything is read and checked before the first write, and no tick later than Redis TIME
  fires. Safe to resend: a copy arriving after the first one was applied finds `next`
  already at ARGV[6] (or, when that copy reached the fire-count limit, ended with
  `limitEnded` = ARGV[5]) and answers "already applied" without writing.

  A schedule with a `limit` (Bull's repeat.limit) fires at most `limit` ticks in all: the
  ticks past it are neither fired nor missed, and the call that reaches it ends the
  schedule (`next` "", +inf in the zset, `limitEnded`, an `ended` event) whatever ARGV[6]
  says, so no leader, stale or not, ever fires tick limit + 1.

  KEYS[1] lease       string: leader token
  KEYS[2] meta        hash: `leaderEpoch`, `seq`
  KEYS[3] schedules   zset: schedule name -> next fire ms (+inf: paused, ended or set aside)
  KEYS[4] schedule    hash of this schedule (see upsert_schedule-4.lua)
  KEYS[5] ledger      stream of this schedule: tick, job, kind (fired / missed), reason,
                      and for a summary of unlisted dropped ticks: count, exact
  KEYS[6] wait        list: jobs without priority
  KEYS[7] prioritized zset: jobs with a priority
  KEYS[8] active      zset
  KEYS[9] delayed     zset
  KEYS[10] events     stream
  KEYS[11] marker     zset: wakes one blocked worker
  KEYS[12..]          the job hash `<prefix>job:<schedule>:<tick>` of each of the F ticks of
                      ARGV[7], in the same order (KEYS[11 + i]); then, only when ARGV[12] is
                      not "", the hash of that previous job (the overlap check), last

  ARGV[1] leader token
  ARGV[2] leader epoch
  ARGV[3] schedule name
  ARGV[4] definition fingerprint the caller computed from
  ARGV[5] expected next fire ms (the compare-and-set)
  ARGV[6] new next fire ms, or "" when the schedule has ended
  ARGV[7] ticks to fire, ascending, comma-separated ("" for none)
  ARGV[8] ticks dropped by the misfire policy, listed, comma-separated ("" for none)
  ARGV[9] further dropped ticks not listed in ARGV[8] (one summary entry)
  ARGV[10] the first of those unlisted ticks ("" when ARGV[9] is 0)
  ARGV[11] "1" when ARGV[9] is exact, "0" when it is a lower bound
  ARGV[12] the schedule's `lastJob` as the caller read it ("" for none)
  ARGV[13] events stream max length (approximate)
  ARGV[14] ledger max length (approximate)

  Returns {fired, missed, now ms, flags}: flags 0, or 2 when this call reached the limit and
  ended the schedule; {0, 0, now ms, 1} when this call had already been applied (a resend);
  or {code, 0, now ms, 0} with code -4 not the leader, -5 schedule changed (gone, paused,
  redefined, next or last job moved), -6 a tick is not due yet
]]
local leaseKey, metaKey, schedulesKey, scheduleKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ledgerKey, waitKey, prioritizedKey, activeKey = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local delayedKey, eventsKey, markerKey = KEYS[9], KEYS[10], KEYS[11]
local token, epoch, name, fingerprint = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local expectedNext, newNext, fireList, missedList = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local extraMissed, extraFrom, extraExact = tonumber(ARGV[9]), ARGV[10], ARGV[11]
local previousJob, maxEvents, maxLedger = ARGV[12], ARGV[13], ARGV[14]
-- @include waiting

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Read and check.

if redis.call("GET", leaseKey) ~= token or redis.call("HGET", metaKey, "leaderEpoch") ~= epoch then
  return {-4, 0, now, 0}
end
local s = redis.call("HMGET", scheduleKey, "fp", "next", "paused", "jobName", "data", "opts", "pri",
  "overlap", "lastJob", "limit", "fired", "limitEnded")
if s[1] ~= fingerprint or s[3] then
  return {-5, 0, now, 0}
end
if s[2] ~= expectedNext then
  if s[2] == newNext or (s[2] == "" and s[12] == expectedNext) then
    return {0, 0, now, 1}  -- `next` only moves forward: our first copy moved it there
  end
  return {-5, 0, now, 0}
end
if (s[9] or "") ~= previousJob then
  return {-5, 0, now, 0}
end

local function split(list)
  local out = {}
  for v in string.gmatch(list, "[^,]+") do
    out[#out + 1] = v
  end
  return out
end
local fires, missed = split(fireList), split(missedList)
local wantKeys = 11 + #fires + (previousJob ~= "" and 1 or 0)
if #KEYS ~= wantKeys then
  return redis.error_reply("ERR fire_schedule: expected " .. wantKeys .. " keys, got " .. #KEYS)
end
local function endsWith(key, suffix)
  return string.sub(key, -#suffix) == suffix
end
for i, tick in ipairs(fires) do
  if not endsWith(KEYS[11 + i], "job:" .. name .. ":" .. tick) then
    return redis.error_reply("ERR fire_schedule: KEYS[" .. (11 + i) .. "] is not the job of tick " .. tick)
  end
end
if previousJob ~= "" and not endsWith(KEYS[wantKeys], "job:" .. previousJob) then
  return redis.error_reply("ERR fire_schedule: the last key is not the job " .. previousJob)
end
if tonumber(expectedNext) > now then
  return {-6, 0, now, 0}
end
for _, tick in ipairs(fires) do
  if tonumber(tick) > now then return {-6, 0, now, 0} end
end
for _, tick in ipairs(missed) do
  if tonumber(tick) > now then return {-6, 0, now, 0} end
end
if extraMissed > 0 and tonumber(extraFrom) > now then
  return {-6, 0, now, 0}
end

local jobName, data, opts, priority = s[4], s[5], s[6], tonumber(s[7] or "0")
local overlapSkip = s[8] == "skip"
-- Fires left before the limit (nil: no limit).
local room = s[10] and (tonumber(s[10]) - tonumber(s[11] or "0")) or nil

-- Waiting (`wait` or `prioritized`), active or delayed. `wait` is a list (LPOS would be
-- O(N)): a job sits there when its hash exists and no zset holds it.
local previousRunning = false
if overlapSkip and previousJob ~= "" then
  if redis.call("ZSCORE", activeKey, previousJob) or redis.call("ZSCORE", delayedKey, previousJob)
      or redis.call("ZSCORE", prioritizedKey, previousJob) then
    previousRunning = true
  else
    local f = redis.call("HMGET", KEYS[wantKeys], "ts", "fon")
    previousRunning = f[1] ~= false and f[2] == false
  end
end
-- Per tick: "fire", "overlap" (dropped), "exists" (already enqueued: nothing to do) or
-- "limit" (past the fire-count limit: the schedule ends).
local decision = {}
for i = 1, #fires do
  if room and room <= 0 then
    decision[i] = "limit"
  elseif overlapSkip and previousRunning then
    decision[i] = "overlap"
  elseif redis.call("EXISTS", KEYS[11 + i]) == 1 then
    decision[i] = "exists"
  else
    decision[i] = "fire"
    previousRunning = true  -- the job just enqueued is waiting
    if room then room = room - 1 end
  end
end
local ended = room ~= nil and room <= 0
if ended then
  newNext = ""
end

-- Write.

local nMissed, nFired, lastTick, lastJob = 0, 0, nil, nil
local function miss(tick, reason)
  redis.call("XADD", ledgerKey, "MAXLEN", "~", maxLedger, "*", "tick", tick, "job", "",
    "kind", "missed", "reason", reason)
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "missed",
    "schedule", name, "tick", tick, "reason", reason)
  nMissed = nMissed + 1
end

for _, tick in ipairs(missed) do
  miss(tick, "misfire")
end
if extraMissed > 0 then
  redis.call("XADD", ledgerKey, "MAXLEN", "~", maxLedger, "*", "tick", extraFrom, "job", "",
    "kind", "missed", "reason", "misfire", "count", extraMissed, "exact", extraExact)
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "missed",
    "schedule", name, "tick", extraFrom, "count", extraMissed, "exact", extraExact,
    "reason", "misfire")
  nMissed = nMissed + extraMissed
end

for i, tick in ipairs(fires) do
  if decision[i] == "overlap" then
    miss(tick, "overlap")
  elseif decision[i] == "fire" then
    local jobId = name .. ":" .. tick
    local jobKey = KEYS[11 + i]
    redis.call("HSET", jobKey, "name", jobName, "data", data, "opts", opts, "ts", now, "atm", 0)
    if priority > 0 then
      redis.call("HSET", jobKey, "pri", priority)
    end
    pushWaitingAt(metaKey, waitKey, prioritizedKey, jobId, priority)
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
if ended then
  redis.call("HSET", scheduleKey, "limitEnded", expectedNext)
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "schedule",
    "schedule", name, "action", "ended", "reason", "limit", "limit", s[10])
end
if nMissed > 0 then
  redis.call("HINCRBY", scheduleKey, "missed", nMissed)
  if extraExact == "0" and extraMissed > 0 then
    -- `missed` is then a lower bound; state says so.
    redis.call("HSET", scheduleKey, "missedAtLeast", "1")
  end
end
return {nFired, nMissed, now, ended and 2 or 0}
