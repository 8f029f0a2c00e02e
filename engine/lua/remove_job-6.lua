--[[
  Delete a job that no worker holds: from `wait`, `delayed`, `completed` or `failed`.
  An active job is refused, so a running handler never loses its hash under it.

  KEYS[1] wait      zset
  KEYS[2] delayed   zset
  KEYS[3] completed zset
  KEYS[4] failed    zset
  KEYS[5] active    zset
  KEYS[6] events    stream

  ARGV[1] job key prefix
  ARGV[2] job id
  ARGV[3] actor ("" when unknown)
  ARGV[4] events stream max length

  Returns 1, or -1 (no such job) / -3 (job is active)
]]
local activeKey, eventsKey = KEYS[5], KEYS[6]
local jobPrefix, jobId, actor, maxEvents = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local jobKey = jobPrefix .. jobId
if redis.call("EXISTS", jobKey) == 0 then
  return -1
end
if redis.call("ZSCORE", activeKey, jobId) then
  return -3
end
for i = 1, 4 do
  redis.call("ZREM", KEYS[i], jobId)
end
redis.call("DEL", jobKey, jobKey .. ":logs")
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "removed", "jobId", jobId,
  "by", actor)
return 1
