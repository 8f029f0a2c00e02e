--[[
  One page of waiting job ids in claim order: the `wait` list (no priority, FIFO), then the
  `prioritized` zset; one atomic read (no MULTI, which Redis refuses over `maxmemory`).

  KEYS[1] wait        list
  KEYS[2] prioritized zset

  ARGV[1] start (index, >= 0)
  ARGV[2] end (index, inclusive, >= start)

  Returns the ids
]]
local waitKey, prioritizedKey = KEYS[1], KEYS[2]
local start, stop = tonumber(ARGV[1]), tonumber(ARGV[2])

local ids = redis.call("LRANGE", waitKey, start, stop)
local length = redis.call("LLEN", waitKey)
if stop >= length then
  local more = redis.call("ZRANGE", prioritizedKey, math.max(start - length, 0), stop - length)
  for _, id in ipairs(more) do
    ids[#ids + 1] = id
  end
end
return ids
