--[[
  Add a batch of jobs (one or more): for each, a new hash plus an entry in `wait` (no
  priority: appended to the list), `prioritized` (priority >= 1; derived from the `wait` key)
  or `delayed` (when it has a delay). A fixed job id that already exists is left as it is.
  One call per batch rather than per job: the per-call cost of a script (argument tables,
  TIME, the sequence counter, the wake-up marker) is paid once for the batch.

  KEYS[1] meta      hash: `seq` counter, `paused` flag
  KEYS[2] wait      list: ids of waiting jobs without priority, FIFO (its sibling
                    `prioritized`, zset: score = priority * 2^32 + sequence)
  KEYS[3] delayed   zset: score = due time (ms)
  KEYS[4] events    stream
  KEYS[5] marker    zset: wakes one blocked worker

  ARGV[1] job key prefix (`<prefix>:{<queue>}:job:`)
  ARGV[2] events stream max length (approximate)
  then 6 per job, from ARGV[3]:
    fixed job id, or "" to take the next sequence number
    job name
    data (JSON)
    opts (JSON)
    delay (ms, >= 0)
    priority (0 = none, 1 = highest)

  Returns {now (ms), then per job: job id, 1 if created or 0 if the fixed id existed}
]]
local metaKey, waitKey, delayedKey, eventsKey, markerKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local jobPrefix, maxEvents = ARGV[1], ARGV[2]
local count = (#ARGV - 2) / 6
-- `prioritized` is derived from the `wait` key rather than passed in KEYS (same hash tag,
-- so same slot, as job keys built from the prefix): see docs/ARCHITECTURE.md.
local prioritizedKey = string.sub(waitKey, 1, -5) .. "prioritized"

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- One counter bump for the batch; a fixed id that already exists leaves a gap, harmless.
local seq = redis.call("HINCRBY", metaKey, "seq", count) - count
local result = {now}
local anyWaiting, firstDue = false, nil
local listed = {}

for j = 0, count - 1 do
  local base = 3 + j * 6
  local fixedId, name, data, opts = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local delay, priority = tonumber(ARGV[base + 4]), tonumber(ARGV[base + 5])
  seq = seq + 1
  local jobId = fixedId
  if fixedId == "" then
    jobId = tostring(seq)
  end
  local jobKey = jobPrefix .. jobId
  if fixedId ~= "" and redis.call("EXISTS", jobKey) == 1 then
    result[#result + 1] = jobId
    result[#result + 1] = 0
  else
    -- Defaults are left out (no `name` for the default name, no `opts` for "{}", `atm`
    -- absent means 0): every byte of a waiting job is multiplied by the queue length.
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
      redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "delayed", "jobId",
        jobId, "delay", delay)
      if firstDue == nil or due < firstDue then
        firstDue = due
      end
    else
      if priority > 0 then
        redis.call("ZADD", prioritizedKey, priority * 4294967296 + (seq % 4294967296), jobId)
      else
        listed[#listed + 1] = jobId
      end
      redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "waiting", "jobId",
        jobId)
      anyWaiting = true
    end
    result[#result + 1] = jobId
    result[#result + 1] = 1
  end
end

if #listed > 0 then
  -- One RPUSH for the batch (at most a few hundred ids: the caller's batch size).
  redis.call("RPUSH", waitKey, unpack(listed))
end
if firstDue ~= nil then
  -- Wake a worker so it re-arms its blocking timeout for this (maybe earlier) due time.
  redis.call("ZADD", markerKey, firstDue, "d")
end
if anyWaiting then
  redis.call("ZADD", markerKey, 0, "w")
end
return result
