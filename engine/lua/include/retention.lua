--[[
  Shared by the scripts that finish jobs (spliced in by engine/scripts.py where a script
  says `-- @include retention`; needs `-- @include batch` first). A finished set keeps at
  most `keepCount` jobs and none older than `keepAgeMs` (-1 = no limit), removing at most
  `batch` jobs per rule per call. `keepCount` 0 (Bull's `true`) removes the finishing job
  itself, never the others.

  Retention is PLANNED before the script's first write and written after, so a script
  refused part-way (Redis does not roll back) never leaves a half-trimmed set:

    local plan = retentionPlan(setKey, jobPrefix, now, batch)
    plan.add(id)                   -- a job finishing into the set (score `now`)
    plan.drop(id)                  -- a job finishing with keepCount 0: deleted, not added
    plan.trim(keepCount, keepAgeMs) -- apply a setting here (after the adds so far)
    plan.resolve()                 -- READS: the oldest members and each victim's keys
    plan.removed(id)               -- after resolve: is this finishing job deleted?
    plan.write()                   -- WRITES

  The victims are the oldest members (score, then insertion order for this call's jobs),
  read with one ZRANGE of the exact prefix the rules can reach. A victim's keys are
  checked with `redis.pcall` (a key moved to another Cluster node mid-migration answers an
  error): trimming stops at the first victim that cannot be read here.
]]

-- The log list of a job: its own namespace `logs:<id>` beside `job:` (keys.py:
-- QueueKeys.logs), so no job id can name another job's logs.
local function logsKeyOf(jobPrefix, id)
  return string.sub(jobPrefix, 1, -5) .. "logs:" .. id
end

local function retentionPlan(setKey, jobPrefix, now, batch)
  local ops, plan = {}, {}
  local adds, gone, dropKeys, victims, delKeys = {}, {}, {}, {}, {}

  function plan.add(id)
    ops[#ops + 1] = {"add", id}
  end

  function plan.drop(id)
    ops[#ops + 1] = {"drop", id}
  end

  function plan.trim(keepCount, keepAgeMs)
    if keepCount > 0 or keepAgeMs >= 0 then
      ops[#ops + 1] = {"trim", keepCount, keepAgeMs}
    end
  end

  function plan.resolve()
    -- 1. How far into the set the rules can reach (an upper bound): one ZRANGE.
    local card = redis.call("ZCARD", setKey)
    local reach, size = 0, card
    for _, op in ipairs(ops) do
      if op[1] == "add" then
        size = size + 1
      elseif op[1] == "trim" then
        if op[3] >= 0 then
          local old = redis.call("ZCOUNT", setKey, "-inf", "(" .. (now - op[3]))
          reach = reach + math.min(batch, old)
        end
        if op[2] > 0 and size > op[2] then
          local r = math.min(batch, size - op[2])
          reach, size = reach + r, size - r
        end
      end
    end
    reach = math.min(reach, card)
    local existing = {}
    if reach > 0 then
      existing = redis.call("ZRANGE", setKey, 0, reach - 1, "WITHSCORES")
    end
    -- 2. Replay the adds and rules over the set's oldest members then this call's jobs.
    local front, newFront, fresh = 1, 1, {}
    local oldCount = #existing / 2
    local function popFront()
      if front <= oldCount then
        victims[#victims + 1] = existing[2 * front - 1]
        front = front + 1
        return true
      end
      -- Unread older members remain unless everything was read (reach == card).
      if reach < card or newFront > #fresh then
        return false
      end
      gone[fresh[newFront]] = true
      newFront = newFront + 1
      return true
    end
    size = card
    for _, op in ipairs(ops) do
      if op[1] == "add" then
        fresh[#fresh + 1] = op[2]
        size = size + 1
      elseif op[1] == "drop" then
        gone[op[2]] = true
      else
        local keepCount, keepAgeMs = op[2], op[3]
        if keepAgeMs >= 0 then
          local cutoff, n = now - keepAgeMs, 0
          while n < batch and front <= oldCount and tonumber(existing[2 * front]) < cutoff do
            popFront()
            n, size = n + 1, size - 1
          end
        end
        if keepCount > 0 then
          local n = 0
          while n < batch and size > keepCount and popFront() do
            n, size = n + 1, size - 1
          end
        end
      end
    end
    for _, id in ipairs(fresh) do
      if not gone[id] then
        adds[#adds + 1] = now
        adds[#adds + 1] = id
      end
    end
    -- 3. Read every victim's keys here, before any write.
    local kept = {}
    for _, id in ipairs(victims) do
      local hash = redis.pcall("EXISTS", jobPrefix .. id)
      local logs = redis.pcall("EXISTS", logsKeyOf(jobPrefix, id))
      if not (readable(hash) and readable(logs)) then
        break -- moved mid-migration: trim the rest on a later call
      end
      kept[#kept + 1] = id
      if hash == 1 then
        delKeys[#delKeys + 1] = jobPrefix .. id
      end
      if logs == 1 then
        delKeys[#delKeys + 1] = logsKeyOf(jobPrefix, id)
      end
    end
    victims = kept
    for id in pairs(gone) do
      local logs = redis.pcall("EXISTS", logsKeyOf(jobPrefix, id))
      dropKeys[#dropKeys + 1] = jobPrefix .. id
      if readable(logs) and logs == 1 then
        dropKeys[#dropKeys + 1] = logsKeyOf(jobPrefix, id)
      end
    end
  end

  function plan.removed(id)
    return gone[id] == true
  end

  function plan.write()
    callSliced("ZADD", setKey, adds, 2)
    callSliced("ZREM", setKey, victims)
    delSliced(delKeys)
    delSliced(dropKeys)
  end

  return plan
end

-- Bull's removeOnComplete / removeOnFail as stored in a job's `opts` JSON: {keepCount,
-- keepAgeMs} (-1 = no limit); `defaultCount` when the job says nothing or cannot be read.
local function retentionOf(optsJson, field, defaultCount)
  if not optsJson or optsJson == "" then
    return defaultCount, -1
  end
  local ok, opts = pcall(cjson.decode, optsJson)
  if not ok or type(opts) ~= "table" then
    return defaultCount, -1
  end
  local r = opts[field]
  if r == true then
    return 0, -1
  elseif r == false then
    return -1, -1
  elseif type(r) == "number" and r >= 0 then
    return math.floor(r), -1
  elseif type(r) == "table" then
    local count, age = tonumber(r["count"]), tonumber(r["age"])
    return count and math.floor(count) or -1, age and math.floor(age * 1000) or -1
  end
  return defaultCount, -1
end
