--[[
  Read one job and the state it is in, atomically (a job moving between two structures is
  never seen in neither) and without MULTI, which Redis refuses over `maxmemory`. Writes
  nothing, so it runs under OOM and NOREPLICAS too.

  KEYS[1] job         hash of the job
  KEYS[2] wait        list
  KEYS[3] prioritized zset
  KEYS[4] active      zset
  KEYS[5] delayed     zset
  KEYS[6] completed   zset
  KEYS[7] failed      zset

  ARGV[1] job id

  Returns {} when the job does not exist, else {state, field, value, field, value, ...}:
  state is a JobState value or "orphaned" (in none of the structures; see
  lua/include/jobstate.lua for the cost of the list search)
]]
local jobKey, waitKey, prioritizedKey, activeKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local delayedKey, completedKey, failedKey = KEYS[5], KEYS[6], KEYS[7]
local jobId = ARGV[1]
-- @include jobstate

local fields = redis.call("HGETALL", jobKey)
if #fields == 0 then
  return {}
end
local state = jobState(jobId, waitKey, prioritizedKey, activeKey, delayedKey, completedKey,
  failedKey)
table.insert(fields, 1, state)
return fields
