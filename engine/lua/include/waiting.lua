--[[
  Shared by the scripts that put jobs back into waiting (spliced in by engine/scripts.py
  where a script says `-- @include waiting`). Waiting is two structures: the `wait` LIST
  for jobs without priority (FIFO) and the `prioritized` zset (score = priority * 2^32 +
  sequence, 1 = highest).
]]

-- A job's priority (0 = none), from its hash: read it before a script's first write.
local function jobPriority(jobKey)
  return tonumber(redis.call("HGET", jobKey, "pri") or "0")
end

-- Append a job of `priority` to waiting behind every job of its priority.
local function pushWaitingAt(metaKey, waitKey, prioritizedKey, jobId, priority)
  if priority > 0 then
    local seq = redis.call("HINCRBY", metaKey, "seq", 1)
    redis.call("ZADD", prioritizedKey, priority * 4294967296 + (seq % 4294967296), jobId)
  else
    redis.call("RPUSH", waitKey, jobId)
  end
end

-- Append a job to waiting behind every job of its priority.
local function pushWaiting(metaKey, waitKey, prioritizedKey, jobKey, jobId)
  pushWaitingAt(metaKey, waitKey, prioritizedKey, jobId, jobPriority(jobKey))
end

-- Hand `ids` back to the FRONT of waiting, in the given order: LPUSH for jobs without
-- priority, sequence 0 (ahead of every job of the same priority) otherwise.
local function pushFront(jobPrefix, waitKey, prioritizedKey, ids)
  local listed = {}
  for _, id in ipairs(ids) do
    local priority = tonumber(redis.call("HGET", jobPrefix .. id, "pri") or "0")
    if priority > 0 then
      redis.call("ZADD", prioritizedKey, priority * 4294967296, id)
    else
      table.insert(listed, 1, id)
    end
  end
  if #listed > 0 then
    -- LPUSH a b c leaves c b a: the reversed list keeps `ids`' order at the front.
    redis.call("LPUSH", waitKey, unpack(listed))
  end
end

-- The rest needs `-- @include batch` before `-- @include waiting`.

-- A job's priority, read before the script's first write: a number (0 = none), or nil
-- when its hash cannot be read on this node (moved by a slot migration).
local function readPriority(jobKey)
  local pri = redis.pcall("HGET", jobKey, "pri")
  if not readable(pri) then
    return nil
  end
  return tonumber(pri) or 0
end

-- Append `ids` (priorities read before) to waiting behind every job of their priority.
local function appendWaiting(metaKey, waitKey, prioritizedKey, ids, priorities)
  local listed, ranked = {}, {}
  for i, id in ipairs(ids) do
    if priorities[i] > 0 then
      ranked[#ranked + 1] = i
    else
      listed[#listed + 1] = id
    end
  end
  if #ranked > 0 then
    local seq = redis.call("HINCRBY", metaKey, "seq", #ranked) - #ranked
    local args = {}
    for j, i in ipairs(ranked) do
      args[#args + 1] = priorities[i] * 4294967296 + ((seq + j) % 4294967296)
      args[#args + 1] = ids[i]
    end
    callSliced("ZADD", prioritizedKey, args, 2)
  end
  callSliced("RPUSH", waitKey, listed)
end

-- Hand `ids` (priorities read before) back to the FRONT of waiting, in the given order.
local function frontWaiting(waitKey, prioritizedKey, ids, priorities)
  local listed, args = {}, {}
  for i = #ids, 1, -1 do
    if priorities[i] > 0 then
      args[#args + 1] = priorities[i] * 4294967296
      args[#args + 1] = ids[i]
    else
      listed[#listed + 1] = ids[i]
    end
  end
  callSliced("ZADD", prioritizedKey, args, 2)
  -- LPUSH a b c leaves c b a: the reversed list keeps `ids`' order at the front (and
  -- slices pushed in order keep it too).
  callSliced("LPUSH", waitKey, listed)
end
