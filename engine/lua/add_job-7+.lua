--[[
  Add a batch of jobs (one or more) whose ids the caller decided (a fixed `job_id`, or one
  the queue reserved from the `seq` counter): for each, a new hash plus an entry in `wait`
  (no priority: appended to the list), `prioritized` (priority >= 1) or `delayed` (when it
  has a delay). A job id that already exists is left as it is. One call per batch rather
  than per job: the per-call cost of a script (argument tables, TIME, the wake-up marker)
  is paid once for the batch.

  A client may send a call twice (a resend after a lost reply): the first copy records its
  reply under the call's request key and a later copy returns it and changes nothing, even
  if the jobs it made already ran and were removed meanwhile. Everything is read and
  checked before the first write.

  KEYS[1] meta        hash: `seq` counter (the sequence of prioritized jobs)
  KEYS[2] wait        list: ids of waiting jobs without priority, FIFO
  KEYS[3] prioritized zset: score = priority * 2^32 + sequence
  KEYS[4] delayed     zset: score = due time (ms)
  KEYS[5] events      stream
  KEYS[6] marker      zset: wakes one blocked worker
  KEYS[7] request     string: this call's reply record (lua/include/request.lua)
  KEYS[8..] the hash of each job, in the order of the jobs in ARGV

  ARGV[1] reply record lifetime (ms): the resend window
  ARGV[2] events stream max length (approximate)
  then 6 per job, from ARGV[3]:
    job id
    job name
    data (JSON)
    opts (JSON)
    delay (ms, >= 0)
    priority (0 = none, 1 = highest)

  Returns {now (ms), then per job: job id, 1 if created or 0 if the id existed}
]]
local metaKey, waitKey, prioritizedKey, delayedKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local eventsKey, markerKey, requestKey = KEYS[5], KEYS[6], KEYS[7]
local windowMs, maxEvents = ARGV[1], ARGV[2]
-- @include request

local prior = priorReply(requestKey)
if prior then
  return prior
end
local count = (#ARGV - 2) / 6
if #KEYS ~= 7 + count then
  return redis.error_reply("ERR add_job: " .. count .. " jobs but " .. (#KEYS - 7) .. " job keys")
end

-- Reads and checks, before any write.
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- fresh[j]: job j is created (its id neither exists nor came earlier in this batch).
local fresh, seen, prioritizedCount = {}, {}, 0
for j = 1, count do
  local base = 3 + (j - 1) * 6
  local jobId = ARGV[base]
  fresh[j] = not seen[jobId] and redis.call("EXISTS", KEYS[7 + j]) == 0
  seen[jobId] = true
  if fresh[j] and tonumber(ARGV[base + 4]) == 0 and tonumber(ARGV[base + 5]) > 0 then
    prioritizedCount = prioritizedCount + 1
  end
end

local seq = 0
if prioritizedCount > 0 then
  seq = redis.call("HINCRBY", metaKey, "seq", prioritizedCount) - prioritizedCount
end
local result = {now}
local anyWaiting, firstDue = false, nil
local listed = {}

for j = 1, count do
  local base = 3 + (j - 1) * 6
  local jobId, name, data, opts = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local delay, priority = tonumber(ARGV[base + 4]), tonumber(ARGV[base + 5])
  result[#result + 1] = jobId
  if not fresh[j] then
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
    redis.call("HSET", KEYS[7 + j], unpack(fields))
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
        seq = seq + 1
        redis.call("ZADD", prioritizedKey, priority * 4294967296 + (seq % 4294967296), jobId)
      else
        listed[#listed + 1] = jobId
      end
      redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "waiting", "jobId",
        jobId)
      anyWaiting = true
    end
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
return recordReply(requestKey, windowMs, result)
