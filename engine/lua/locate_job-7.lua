--[[
  Where one job is, exhaustively and atomically, for the consistency check (a job every
  structure of which it is in, and whether its hash exists). Writes nothing. The `wait`
  list is searched in full (LPOS, O(N) in its length): the check calls this only for the
  few ids its first pass found suspect.

  KEYS[1] job         hash of the job
  KEYS[2] wait        list
  KEYS[3] prioritized zset
  KEYS[4] active      zset
  KEYS[5] delayed     zset
  KEYS[6] completed   zset
  KEYS[7] failed      zset

  ARGV[1] job id

  Returns {1 if the hash exists else 0, then the name of each structure holding the id:
  `wait` once per occurrence (at most 2 counted), `prioritized`, `active`, `delayed`,
  `completed`, `failed`}
]]
local jobId = ARGV[1]
local names = {"wait", "prioritized", "active", "delayed", "completed", "failed"}

local result = {redis.call("EXISTS", KEYS[1])}
local positions = redis.call("LPOS", KEYS[2], jobId, "COUNT", 2)
for _ = 1, #positions do
  result[#result + 1] = "wait"
end
for i = 2, 6 do
  if redis.call("ZSCORE", KEYS[i + 1], jobId) then
    result[#result + 1] = names[i]
  end
end
return result
