--[[
  Add a batch of jobs (one or more) whose ids the caller decided (a fixed `job_id`, or one
  the queue reserved from the `seq` counter): for each, a new hash plus an entry in `wait`
  (no priority: appended to the list), `prioritized` (priority >= 1) or `delayed` (when it
  has a delay). A job id that already exists is left as it is. One call per batch rather
  than per job: the per-call cost of a script (argument tables, TIME, the wake-up marker)
  is paid once for the batch.

  Jobs with a `deduplication` option (engine/dedup.py) come with a tail: the window of
  each id is the key `dedup:<id>` holding the id of the job that opened it. A job whose
  window is open is not added: its reply names the holder, a `deduplicated` event is
  written, `extend` restarts the window's ttl and `replace` gives the holder, if it is
  still pending (waiting or delayed; never active or finished), this job's data and, if
  delayed, this job's delay from now. A window without ttl whose holder is finished or
  gone is closed: the job opens a new one (and records the id in its hash field `dd`, so
  the finishing scripts close it: lua/include/dedup.lua). Jobs of one call are taken in
  order, so a later job of the batch may be deduplicated against an earlier one.

  A client may send a call twice (a resend after a lost reply): the first copy records its
  reply under the call's request key and a later copy returns it and changes nothing, even
  if the jobs it made already ran and were removed meanwhile. Everything is read and
  checked before the first write; a holder's hash (not declared: its id is only known
  from the dedup key) is read with `redis.pcall`, and one that cannot be read on this node
  (a slot migration) refuses the call before any write.

  KEYS[1] meta        hash: `seq` counter (the sequence of prioritized jobs)
  KEYS[2] wait        list: ids of waiting jobs without priority, FIFO
  KEYS[3] prioritized zset: score = priority * 2^32 + sequence
  KEYS[4] delayed     zset: score = due time (ms)
  KEYS[5] events      stream
  KEYS[6] marker      zset: wakes one blocked worker
  KEYS[7] request     string: this call's reply record (lua/include/request.lua)
  KEYS[8..] the hash of each of the n jobs, in the order of the jobs in ARGV; then, only
            with D > 0 deduplicated jobs, `active`, `completed` and `failed` (zsets: the
            state of a window's holder), then the dedup key of each of the D entries

  ARGV[1] reply record lifetime (ms): the resend window
  ARGV[2] events stream max length (approximate)
  ARGV[3] D: the number of jobs with a deduplication option (0: no tail)
  then 6 per job, from ARGV[4]:
    job id
    job name
    data (JSON)
    opts (JSON)
    delay (ms, >= 0)
    priority (0 = none, 1 = highest)
  only with D > 0: the job key prefix, then 5 per entry, in ascending job order:
    the job's index in the batch (1-based)
    deduplication id
    ttl (ms; 0 = until the job finishes)
    extend (1 or 0)
    replace (1 or 0)

  Returns {now (ms), then per job: job id, code}: code 1 = created, 0 = the fixed id
  existed, 2 = deduplicated (the id is the holder's), 3 = deduplicated and the holder's
  data replaced (engine/dedup.py: CREATED, EXISTED, DEDUPLICATED, REPLACED)
]]
local metaKey, waitKey, prioritizedKey, delayedKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local eventsKey, markerKey, requestKey = KEYS[5], KEYS[6], KEYS[7]
local windowMs, maxEvents, dedupCount = ARGV[1], ARGV[2], tonumber(ARGV[3])
-- @include request

local prior = priorReply(requestKey)
if prior then
  return prior
end
local count = (#ARGV - 3 - (dedupCount > 0 and 1 + 5 * dedupCount or 0)) / 6
if count ~= math.floor(count) or #KEYS ~= 7 + count + (dedupCount > 0 and 3 + dedupCount or 0) then
  return redis.error_reply("ERR add_job: " .. count .. " jobs, " .. dedupCount ..
    " deduplicated, but " .. (#KEYS - 7) .. " keys after the fixed ones")
end

-- Reads and checks, before any write.
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- fresh[j]: job j is created (its id neither exists nor came earlier in this batch, and
-- no open window deduplicates it).
local fresh, seen = {}, {}
for j = 1, count do
  local jobId = ARGV[4 + (j - 1) * 6]
  fresh[j] = not seen[jobId] and redis.call("EXISTS", KEYS[7 + j]) == 0
  seen[jobId] = true
end

-- Deduplication, kept sparse so that jobs without it pay nothing: per deduplicated job j,
-- dedupCode[j] (2 or 3), holderOf[j] and dedupIdOf[j] (also set for a job that opens a
-- window without ttl: its `dd`); dataOf / delayOf: what a job of this batch is created
-- with when a later one replaced it. One window per dedup key, in the order the batch
-- first touches them: holder (job id) and its state, index (the holder is job `index` of
-- this batch), opened (SET by this call), ttl (PX to set), extended (PEXPIRE), data /
-- delay (to give a holder that already existed).
local none = {}
local dedupCode, holderOf, dedupIdOf, dataOf, delayOf = none, none, none, none, none
local touched, jobPrefix = none, nil
if dedupCount > 0 then
  dedupCode, holderOf, dedupIdOf, dataOf, delayOf, touched = {}, {}, {}, {}, {}, {}
  local windows = {}
  local activeKey, completedKey, failedKey = KEYS[8 + count], KEYS[9 + count], KEYS[10 + count]
  jobPrefix = ARGV[4 + 6 * count]
  for e = 1, dedupCount do
    local a = 5 + 6 * count + (e - 1) * 5
    local j, dedupId, ttl = tonumber(ARGV[a]), ARGV[a + 1], tonumber(ARGV[a + 2])
    local base = 4 + (j - 1) * 6
    local key = KEYS[10 + count + e]
    local w = windows[key]
    if fresh[j] and w == nil then
      w = {key = key}
      windows[key] = w
      touched[#touched + 1] = w
      local holder = redis.call("GET", key)
      if holder then
        local exists = redis.pcall("EXISTS", jobPrefix .. holder)
        if type(exists) == "table" and exists.err then -- not on this node (include/batch.lua)
          return redis.error_reply("TRYAGAIN add_job: the hash of job " .. holder ..
            " (holder of deduplication id " .. dedupId .. ") cannot be read on this node")
        end
        local state = "waiting"
        if exists == 0 then
          state = "gone"
        elseif redis.call("ZSCORE", activeKey, holder) then
          state = "active"
        elseif redis.call("ZSCORE", delayedKey, holder) then
          state = "delayed"
        elseif redis.call("ZSCORE", completedKey, holder) or redis.call("ZSCORE", failedKey, holder) then
          state = "finished"
        end
        -- A window with a ttl lasts its ttl; one without lasts while its holder is pending.
        if redis.call("PTTL", key) >= 0 or (state ~= "finished" and state ~= "gone") then
          w.holder, w.state = holder, state
        end
      end
    end
    if fresh[j] and w.holder == nil then
      w.holder, w.index, w.opened = ARGV[base], j, true
      w.state = tonumber(ARGV[base + 4]) > 0 and "delayed" or "waiting"
      if ttl > 0 then
        w.ttl = ttl
      else
        dedupIdOf[j] = dedupId -- recorded as `dd`: the finishing scripts close the window
      end
    elseif fresh[j] then
      fresh[j], dedupCode[j], holderOf[j], dedupIdOf[j] = false, 2, w.holder, dedupId
      if ARGV[a + 3] == "1" then
        w.ttl, w.extended = ttl, true
      end
      if ARGV[a + 4] == "1" and (w.state == "delayed" or w.state == "waiting") then
        dedupCode[j] = 3
        local delay = nil
        if w.state == "delayed" then
          delay = tonumber(ARGV[base + 4])
        end
        if w.index then
          dataOf[w.index] = ARGV[base + 2]
          delayOf[w.index] = delay or delayOf[w.index]
        else
          w.data, w.delay = ARGV[base + 2], delay
        end
      end
    end
  end
end

local prioritizedCount = 0
for j = 1, count do
  local base = 4 + (j - 1) * 6
  if fresh[j] and (delayOf[j] or tonumber(ARGV[base + 4])) == 0 and tonumber(ARGV[base + 5]) > 0 then
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
  local base = 4 + (j - 1) * 6
  local jobId, name, opts = holderOf[j] or ARGV[base], ARGV[base + 1], ARGV[base + 3]
  local data, delay = dataOf[j] or ARGV[base + 2], delayOf[j] or tonumber(ARGV[base + 4])
  local priority = tonumber(ARGV[base + 5])
  result[#result + 1] = jobId
  if dedupCode[j] then
    result[#result + 1] = dedupCode[j]
    local fields = {"event", "deduplicated", "jobId", jobId, "deduplicationId", dedupIdOf[j]}
    if dedupCode[j] == 3 then
      fields[#fields + 1] = "replaced"
      fields[#fields + 1] = 1
    end
    redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", unpack(fields))
  elseif not fresh[j] then
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
    if dedupIdOf[j] then
      fields[#fields + 1] = "dd"
      fields[#fields + 1] = dedupIdOf[j]
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

for _, w in ipairs(touched) do
  if w.opened and w.ttl then
    redis.call("SET", w.key, w.holder, "PX", w.ttl)
  elseif w.opened then
    redis.call("SET", w.key, w.holder)
  elseif w.extended then
    redis.call("PEXPIRE", w.key, w.ttl)
  end
  if w.data then
    -- A pending holder takes the later add's data (and, delayed, its delay from now).
    redis.call("HSET", jobPrefix .. w.holder, "data", w.data)
    if w.delay then
      local due = now + w.delay
      redis.call("ZADD", delayedKey, due, w.holder)
      if firstDue == nil or due < firstDue then
        firstDue = due
      end
    end
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
