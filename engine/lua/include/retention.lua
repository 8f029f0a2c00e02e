--[[
  Shared by the scripts that finish jobs (spliced in by engine/scripts.py where a script
  says `-- @include retention`): a finished set keeps at most `keepCount` jobs and none
  older than `keepAgeMs` (-1 = no limit), removing at most `batch` jobs per rule per call.
]]

-- Delete finished jobs (hash and logs) and take them out of `setKey`, 250 per command.
local function dropFinished(setKey, jobPrefix, ids)
  -- Logs live in their own namespace (`logs:<id>`, beside `job:`): see QueueKeys.logs.
  local logsPrefix = string.sub(jobPrefix, 1, -5) .. "logs:"
  for s = 1, #ids, 250 do
    local keys, members = {}, {}
    for j = s, math.min(s + 249, #ids) do
      keys[#keys + 1] = jobPrefix .. ids[j]
      keys[#keys + 1] = logsPrefix .. ids[j]
      members[#members + 1] = ids[j]
    end
    redis.call("DEL", unpack(keys))
    redis.call("ZREM", setKey, unpack(members))
  end
end

local function trimFinished(setKey, jobPrefix, now, keepCount, keepAgeMs, batch)
  if keepAgeMs >= 0 then
    dropFinished(setKey, jobPrefix,
      redis.call("ZRANGEBYSCORE", setKey, "-inf", "(" .. (now - keepAgeMs), "LIMIT", 0, batch))
  end
  if keepCount >= 0 then
    local excess = redis.call("ZCARD", setKey) - keepCount
    if excess > 0 then
      dropFinished(setKey, jobPrefix, redis.call("ZRANGE", setKey, 0, math.min(excess, batch) - 1))
    end
  end
end
