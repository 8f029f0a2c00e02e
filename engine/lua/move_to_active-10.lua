--[[
  Claim up to `count` ready jobs for one worker, each with a per-attempt lease token.

  In order: (1) if this very call already ran (a resend: its request record exists),
  return the jobs it claimed that its tokens still hold and change nothing; (2) claim,
  unless paused or rate-limited (a sliding window of start times in `limiter`): the jobs
  at the head of `wait` first, then the best of `prioritized`, each stamped with a fresh
  token and put in `active` AND `claims` with score = now + the claim deadline (the
  worker confirms the ones still running with extend_leases, which gives them the full
  lease); due `delayed` jobs without priority count as the tail of `wait` here, so a short
  `wait` gets them claimed in this call; (3) promote the other due `delayed` jobs (bounded)
  to the end of `wait` (no priority) or to `prioritized` by their `pri`; (4) hand claims whose deadline passed unconfirmed back
  to the front of waiting (their worker never reported them running: no stall counted);
  (5) re-arm the `w` marker if jobs still wait (cascade); (6) record the claim for the
  resend window. Other jobs promoted or handed back here are claimed by the next call.

  Error-atomic: every key it may write is declared, or read with redis.pcall before the
  first write (the claimed, promoted and handed-back jobs' hashes: a hash that has moved
  to another Cluster node mid-migration stops that batch there).

  KEYS[1] meta        hash: `seq` counter, `paused` flag
  KEYS[2] wait        list: waiting jobs without priority, FIFO
  KEYS[3] prioritized zset: score = priority * 2^32 + sequence
  KEYS[4] delayed     zset: score = due time (ms)
  KEYS[5] active      zset: score = deadline (ms)
  KEYS[6] events      stream
  KEYS[7] marker      zset: wake-ups for blocked workers
  KEYS[8] limiter     zset: start times of the current rate-limit window (member id:attempt)
  KEYS[9] claims      zset: claims not yet confirmed, score = claim deadline (ms)
  KEYS[10] request    this call's reply record (lua/include/request.lua)

  ARGV[1] job key prefix
  ARGV[2] worker id (the token is `<worker id>:<attempts started>`)
  ARGV[3] count: most jobs to claim
  ARGV[4] claim deadline (ms): how long a claimed job waits for its worker's confirmation
  ARGV[5] events stream max length
  ARGV[6] rate limit: most starts per window (0 = no limit)
  ARGV[7] rate limit window (ms)
  ARGV[8] most delayed jobs promoted (and expired claims handed back) per call
  ARGV[9] resend window (ms): how long the request record lives

  Returns {now, paused (0/1), rate-limited wait (ms, 0 = not limited), next due time (ms,
  -1 = none: the earliest of the next delayed job and the next unconfirmed claim deadline),
  jobs, ready (1 if jobs wait after a call that moved some: claim again)} where jobs is a
  list of
  {id, token, name ("" = default), data, opts ("" = none), attempts made, created ts,
  stalled count, progress ("" = none)}
]]
local metaKey, waitKey, prioritizedKey, delayedKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local activeKey, eventsKey, markerKey, limiterKey = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local claimsKey, requestKey = KEYS[9], KEYS[10]
local jobPrefix, workerId, count, claimMs = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local maxEvents, rateMax, rateMs = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local promoteBatch, windowMs = tonumber(ARGV[8]), tonumber(ARGV[9])
-- @include batch
-- @include waiting
-- @include request

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- The next due time: the earliest of the next delayed job and of the deadline of a claim
-- made before this call (this call's own claims are its caller's to confirm).
local function nextDue(claimDue)
  local due = -1
  local first = redis.call("ZRANGE", delayedKey, 0, 0, "WITHSCORES")
  if first[2] then
    due = tonumber(first[2])
  end
  if claimDue and (due < 0 or claimDue < due) then
    due = claimDue
  end
  return due
end

local function earliestClaim()
  local claim = redis.call("ZRANGE", claimsKey, 0, 0, "WITHSCORES")
  return claim[2] and tonumber(claim[2]) or nil
end

local function stillWaiting()
  if redis.call("LLEN", waitKey) > 0 or redis.call("ZCARD", prioritizedKey) > 0 then
    return 1
  end
  return 0
end

local FIELDS = {"name", "data", "opts", "atm", "ts", "stc", "prog"}
local function row(id, token, f)
  return {id, token, f[1] or "", f[2] or "null", f[3] or "", f[4] or "0", f[5], f[6] or "0",
    f[7] or ""}
end

-- (1) A resend: the first copy's jobs, re-read, those its tokens still hold.
local prior = priorReply(requestKey)
if prior then
  local jobs, claimedAt = {}, now
  for i = 1, #prior, 2 do
    local id, token = prior[i], prior[i + 1]
    local f = redis.pcall("HMGET", jobPrefix .. id, "tok", "pon", unpack(FIELDS))
    if readable(f) and f[1] == token and redis.call("ZSCORE", activeKey, id) then
      -- The reply's `now` is the first copy's (every job of one claim has it as `pon`),
      -- so a job reads the same processed-on time as Redis holds.
      claimedAt = tonumber(f[2]) or claimedAt
      jobs[#jobs + 1] = row(id, token, {f[3], f[4], f[5], f[6], f[7], f[8], f[9]})
    end
  end
  return {claimedAt, 0, 0, nextDue(earliestClaim()), jobs, stillWaiting()}
end

-- READ everything first.
local due = redis.call("ZRANGEBYSCORE", delayedKey, "-inf", now, "LIMIT", 0, promoteBatch)
local dueIds, duePri = {}, {}
for _, id in ipairs(due) do
  local priority = readPriority(jobPrefix .. id)
  if priority == nil then
    break
  end
  dueIds[#dueIds + 1], duePri[#duePri + 1] = id, priority
end
local takenDue = {}
local paused = redis.call("HEXISTS", metaKey, "paused") == 1
local limitedMs = 0
local fromWait, fromRanked, claimed = {}, {}, {}
if not paused then
  if rateMax > 0 then
    local inWindow = redis.call("ZCOUNT", limiterKey, "(" .. (now - rateMs), "+inf")
    local allowed = rateMax - inWindow
    if allowed <= 0 then
      local oldest = redis.call("ZRANGEBYSCORE", limiterKey, "(" .. (now - rateMs), "+inf",
        "WITHSCORES", "LIMIT", 0, 1)
      limitedMs = math.max(tonumber(oldest[2]) + rateMs - now, 1)
      count = 0
    else
      count = math.min(count, allowed)
    end
  end
  if count > 0 then
    local candidates = redis.call("LRANGE", waitKey, 0, count - 1)
    local nWait = #candidates
    -- Due jobs without priority join the tail of `wait` in this call: when `wait` is
    -- short they are claimed at once, in due order, as the next calls would have.
    local direct = {}
    for j, id in ipairs(dueIds) do
      if #candidates >= count then
        break
      end
      if duePri[j] == 0 then
        candidates[#candidates + 1] = id
        direct[#candidates] = j
      end
    end
    if #candidates < count then
      for _, id in ipairs(redis.call("ZRANGE", prioritizedKey, 0, count - #candidates - 1)) do
        candidates[#candidates + 1] = id
      end
    end
    for i, id in ipairs(candidates) do
      local f = redis.pcall("HMGET", jobPrefix .. id, "ats", unpack(FIELDS))
      if not readable(f) then
        break -- moved mid-migration: claim the jobs before it only
      end
      if i <= nWait then
        fromWait[#fromWait + 1] = id
      elseif direct[i] then
        takenDue[direct[i]] = true
      else
        fromRanked[#fromRanked + 1] = id
      end
      -- Every job hash has `ts`; an id without one can only come from outside the
      -- engine: taken off waiting, never run. Absent fields are defaults (add_job-5.lua).
      if f[6] then
        claimed[#claimed + 1] = {id, (tonumber(f[1]) or 0) + 1,
          {f[2], f[3], f[4], f[5], f[6], f[7], f[8]}}
      end
    end
  end
end
local expired = redis.call("ZRANGEBYSCORE", claimsKey, "-inf", now, "LIMIT", 0, promoteBatch)
local pending = redis.call("ZRANGEBYSCORE", claimsKey, "(" .. now, "+inf", "WITHSCORES", "LIMIT", 0, 1)
local claimDue = pending[2] and tonumber(pending[2]) or nil
if #expired == promoteBatch then
  claimDue = now -- more expired than one call hands back: claim again at once
end
local expiredScores = zmscoreSliced(activeKey, expired)
local stale, back, backPri = {}, {}, {}
for i, id in ipairs(expired) do
  local priority = readPriority(jobPrefix .. id)
  if priority == nil then
    break
  end
  stale[#stale + 1] = id
  if expiredScores[i] then
    back[#back + 1], backPri[#backPri + 1] = id, priority
  end
end

-- WRITE.
-- (2) The claim: exactly the jobs read above (`wait` only grows at its tail meanwhile).
if #fromWait > 0 then
  redis.call("LPOP", waitKey, #fromWait)
end
callSliced("ZREM", prioritizedKey, fromRanked)
local jobs, record, deadlines, starts = {}, {}, {}, {}
for _, c in ipairs(claimed) do
  local id, ats = c[1], c[2]
  local token = workerId .. ":" .. ats
  redis.call("HSET", jobPrefix .. id, "ats", ats, "tok", token, "pon", now)
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "active", "jobId", id,
    "worker", workerId)
  deadlines[#deadlines + 1] = now + claimMs
  deadlines[#deadlines + 1] = id
  starts[#starts + 1] = now
  starts[#starts + 1] = id .. ":" .. ats
  record[#record + 1] = id
  record[#record + 1] = token
  jobs[#jobs + 1] = row(id, token, c[3])
end
callSliced("ZADD", activeKey, deadlines, 2)
callSliced("ZADD", claimsKey, deadlines, 2)
if rateMax > 0 and #claimed > 0 then
  redis.call("ZREMRANGEBYSCORE", limiterKey, "-inf", now - rateMs)
  callSliced("ZADD", limiterKey, starts, 2)
  redis.call("PEXPIRE", limiterKey, rateMs)
end
-- (3) Due delayed jobs: those not claimed above go to waiting.
if #dueIds > 0 then
  callSliced("ZREM", delayedKey, dueIds)
  local restIds, restPri = {}, {}
  for j, id in ipairs(dueIds) do
    if not takenDue[j] then
      restIds[#restIds + 1], restPri[#restPri + 1] = id, duePri[j]
    end
  end
  appendWaiting(metaKey, waitKey, prioritizedKey, restIds, restPri)
end
-- (4) Claims never confirmed: back to the front, as they were.
if #stale > 0 then
  callSliced("ZREM", claimsKey, stale)
  callSliced("ZREM", activeKey, back)
  for _, id in ipairs(back) do
    redis.call("HDEL", jobPrefix .. id, "tok")
    redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "released", "jobId", id,
      "reason", "claim not confirmed")
  end
  frontWaiting(waitKey, prioritizedKey, back, backPri)
end
-- (5) Cascade: jobs still wait after a call that moved some, so another worker (or this
-- one, told by `ready`) claims them.
local ready = 0
if (#claimed > 0 or #dueIds > 0 or #back > 0) and stillWaiting() == 1 then
  redis.call("ZADD", markerKey, 0, "w")
  ready = 1
end
-- (6) The record a resend of this call returns.
if #record > 0 then
  recordReply(requestKey, windowMs, record)
end
return {now, paused and 1 or 0, limitedMs, nextDue(claimDue), jobs, ready}
