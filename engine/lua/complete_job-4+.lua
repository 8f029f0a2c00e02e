--[[
  Finish attempts successfully, a batch per call: each job `active` -> `completed` (token-
  checked, one `completed` event per job), then the retention of the call's jobs applied to
  `completed` once per distinct retention setting (bounded), at the place of the last job
  with that setting, so the outcome is the one of finishing the jobs one by one. A job
  whose keepCount is 0 (Bull's removeOnComplete: true) is deleted instead of kept; its
  `completed` event then carries its return value. A stale token refuses only its own job,
  which is left unchanged. A job that opened a deduplication window without ttl closes it
  (lua/include/dedup.lua).

  Error-atomic: every key it may write is declared or read (redis.pcall) before the first
  write; a resend of the same call changes nothing (the token check answers 0).

  KEYS[1] active    zset
  KEYS[2] completed zset: score = finish time (ms)
  KEYS[3] events    stream
  KEYS[4] claims    zset: claims not yet confirmed (a finish confirms)
  KEYS[5..]         the hash of each job, in ARGV order (KEYS[4 + i] for the i-th)

  ARGV[1] job key prefix (retention deletes older jobs by their id)
  ARGV[2] events stream max length
  ARGV[3] most jobs removed per retention setting per call
  then 5 values per job:
  ARGV[3 + 5i - 4] job id
  ARGV[3 + 5i - 3] lease token of the attempt
  ARGV[3 + 5i - 2] return value (JSON)
  ARGV[3 + 5i - 1] retention: keep at most this many completed jobs (-1 = no count limit,
                   0 = delete this job)
  ARGV[3 + 5i]     retention: drop completed jobs older than this (ms, -1 = no age limit)

  Returns {finished on (ms), codes, durations (ms)}, one code and duration per job in ARGV
  order; code 1 = completed, 0 = this token already finished the job (a resent call),
  -1 = the job no longer exists (a resent call whose first copy deleted it by retention),
  -2 = the lease is lost (token differs or the job is not active; nothing changed)
]]
local activeKey, completedKey, eventsKey, claimsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local jobPrefix, maxEvents, batch = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n = (#ARGV - 3) / 5
if n ~= #KEYS - 4 then
  return redis.error_reply("ERR complete_job: one job hash per job expected in KEYS")
end
-- @include batch
-- @include retention
-- @include dedup

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- READ everything first.
local ids, lastOfSetting = {}, {}
for i = 1, n do
  local b = 3 + (i - 1) * 5
  ids[i] = ARGV[b + 1]
  lastOfSetting[ARGV[b + 4] .. ":" .. ARGV[b + 5]] = i
end
local scores = zmscoreSliced(activeKey, ids)
local plan = retentionPlan(completedKey, jobPrefix, now, batch)
local codes, durations, done, finished, attempts = {}, {}, {}, {}, {}
local trimmed, releases = {}, {}
for i = 1, n do
  local b = 3 + (i - 1) * 5
  local id, token = ids[i], ARGV[b + 2]
  local keepCount, keepAgeMs = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local setting = ARGV[b + 4] .. ":" .. ARGV[b + 5]
  local f = redis.call("HMGET", KEYS[4 + i], "tok", "pon", "atm", "dd")
  codes[i], durations[i] = -2, 0
  if not f[1] and not scores[i] and redis.call("EXISTS", KEYS[4 + i]) == 0 then
    -- The job is gone: this very call ran first and its retention deleted it (Bull's
    -- `removeOnComplete: true`), or it was removed. Not a lost lease.
    codes[i] = -1
  elseif f[1] == token then
    if not scores[i] or done[id] then
      -- The token survives a finish (only a new claim, recovery or release replaces it),
      -- so a matching token outside `active` means this very call already ran.
      codes[i] = 0
    else
      done[id] = true
      durations[i] = math.max(now - (tonumber(f[2]) or now), 0)
      attempts[i] = (tonumber(f[3]) or 0) + 1
      codes[i] = 1
      finished[#finished + 1] = i
      releases[#releases + 1] = dedupRelease(jobPrefix, id, f[4])
      if keepCount == 0 then
        plan.drop(id)
      else
        plan.add(id)
        trimmed[setting] = true
      end
    end
  end
  if lastOfSetting[setting] == i and trimmed[setting] then
    plan.trim(keepCount, keepAgeMs)
  end
end
plan.resolve()

-- WRITE.
local members = {}
for _, i in ipairs(finished) do
  local b = 3 + (i - 1) * 5
  local id = ids[i]
  members[#members + 1] = id
  if plan.removed(id) then
    redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "completed", "jobId",
      id, "duration", durations[i], "returnvalue", ARGV[b + 3])
  else
    redis.call("HSET", KEYS[4 + i], "atm", attempts[i], "fon", now, "rv", ARGV[b + 3])
    redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "completed", "jobId",
      id, "duration", durations[i])
  end
end
callSliced("ZREM", activeKey, members)
callSliced("ZREM", claimsKey, members)
delSliced(releases)
plan.write()
return {now, codes, durations}
