--[[
  Shared by scripts that send many members or keys in one command (spliced in by
  engine/scripts.py where a script says `-- @include batch`). Lua's `unpack` fails past a
  few thousand values (LUAI_MAXCSTACK), so commands go out in slices of at most
  `BATCH_SLICE` values: a batch size from the configuration can never break a script.

  Also `readable(reply)`: whether a `redis.pcall` read answered a value. A key of the
  queue's slot that has just moved to another Cluster node (a slot migration) answers an
  error instead; scripts read every key they did not declare with `redis.pcall` BEFORE
  their first write and stop their batch at such a key, so a refusal never comes after a
  write (Redis does not roll a script back).
]]

local BATCH_SLICE = 1000

-- `redis.call(command, key, items...)` in slices; `per` values stay together (2 for
-- score/member pairs).
local function callSliced(command, key, items, per)
  per = per or 1
  local step = BATCH_SLICE - (BATCH_SLICE % per)
  for s = 1, #items, step do
    redis.call(command, key, unpack(items, s, math.min(s + step - 1, #items)))
  end
end

-- DEL of many keys, in slices.
local function delSliced(keys)
  for s = 1, #keys, BATCH_SLICE do
    redis.call("DEL", unpack(keys, s, math.min(s + BATCH_SLICE - 1, #keys)))
  end
end

-- ZMSCORE of many members, in slices: one score (or false) per member.
local function zmscoreSliced(key, members)
  local out = {}
  for s = 1, #members, BATCH_SLICE do
    local part = redis.call("ZMSCORE", key, unpack(members, s, math.min(s + BATCH_SLICE - 1, #members)))
    for _, v in ipairs(part) do
      out[#out + 1] = v
    end
  end
  return out
end

local function readable(reply)
  return not (type(reply) == "table" and reply.err)
end
