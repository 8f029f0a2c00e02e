--[[
  Finish attempts successfully, a batch per call: each job `active` -> `completed` (token-
  checked, one `completed` event per job), then the retention of the call's jobs applied to
  `completed` once per distinct retention setting (bounded), at the place of the last job
  with that setting, so the outcome is the one of finishing the jobs one by one.
  A stale token refuses only its own job, which is left unchanged.

  KEYS[1] active    zset
  KEYS[2] completed zset: score = finish time (ms)
  KEYS[3] events    stream

  ARGV[1] job key prefix
  ARGV[2] events stream max length
  ARGV[3] most jobs removed per retention setting per call
  then 5 values per job:
  ARGV[3 + 5i - 4] job id
  ARGV[3 + 5i - 3] lease token of the attempt
  ARGV[3 + 5i - 2] return value (JSON)
  ARGV[3 + 5i - 1] retention: keep at most this many completed jobs (-1 = no count limit)
  ARGV[3 + 5i]     retention: drop completed jobs older than this (ms, -1 = no age limit)

  Returns {finished on (ms), codes, durations (ms)}, one code and duration per job in ARGV
  order; code 1 = completed, 0 = this token already finished the job (a retried call),
  -2 = the lease is lost (token differs or the job is not active; nothing changed)
]]
local activeKey, completedKey, eventsKey = KEYS[1], KEYS[2], KEYS[3]
local jobPrefix, maxEvents, batch = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n = (#ARGV - 3) / 5

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local ids = {}
local lastOfSetting = {}
for i = 1, n do
  local b = 3 + (i - 1) * 5
  ids[i] = ARGV[b + 1]
  lastOfSetting[ARGV[b + 4] .. ":" .. ARGV[b + 5]] = i
end
local scores = redis.call("ZMSCORE", activeKey, unpack(ids))

-- @include retention

local codes, durations, done, finished, toAdd, trimmed = {}, {}, {}, {}, {}, {}
local function flushAdds()
  if #toAdd > 0 then
    redis.call("ZADD", completedKey, unpack(toAdd))
    toAdd = {}
  end
end

for i = 1, n do
  local b = 3 + (i - 1) * 5
  local id, token = ids[i], ARGV[b + 2]
  local jobKey = jobPrefix .. id
  local f = redis.call("HMGET", jobKey, "tok", "pon", "atm")
  codes[i], durations[i] = -2, 0
  if f[1] == token then
    if not scores[i] or done[id] then
      -- The token survives a finish (only a new claim, recovery or release replaces it),
      -- so a matching token outside `active` means this very call already ran.
      codes[i] = 0
    else
      done[id] = true
      local duration = now - tonumber(f[2] or now)
      redis.call("HSET", jobKey, "atm", tonumber(f[3] or "0") + 1, "fon", now, "rv", ARGV[b + 3])
      redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "completed", "jobId",
        id, "duration", duration)
      finished[#finished + 1] = id
      toAdd[#toAdd + 1] = now
      toAdd[#toAdd + 1] = id
      codes[i], durations[i] = 1, duration
      trimmed[ARGV[b + 4] .. ":" .. ARGV[b + 5]] = true
    end
  end
  -- Retention once per setting, only if a job of this call with that setting completed.
  local setting = ARGV[b + 4] .. ":" .. ARGV[b + 5]
  local keepCount, keepAgeMs = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  if lastOfSetting[setting] == i and trimmed[setting] then
    flushAdds()
    trimFinished(completedKey, jobPrefix, now, keepCount, keepAgeMs, batch)
  end
end
flushAdds()
if #finished > 0 then
  redis.call("ZREM", activeKey, unpack(finished))
end
return {now, codes, durations}
