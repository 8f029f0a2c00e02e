--[[
  Delete a job that no worker holds: from `wait`, `prioritized`, `delayed`, `completed` or
  `failed`. An active job is refused, so a running handler never loses its hash under it.

  Cost: O(log N) for the zsets; a job found in none of them waits in the `wait` list, and
  LREM there is O(N) in the list's length (a scan; at 1M waiting jobs some milliseconds of
  Redis time). Acceptable for an admin call, not for a hot path.

  KEYS[1] wait      list (its sibling `prioritized`, zset, is derived from this key)
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
local waitKey, activeKey, eventsKey = KEYS[1], KEYS[5], KEYS[6]
local jobPrefix, jobId, actor, maxEvents = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
-- `prioritized` is derived from the `wait` key rather than passed in KEYS (same hash tag,
-- so same slot, as job keys built from the prefix): see docs/ARCHITECTURE.md.
local prioritizedKey = string.sub(waitKey, 1, -5) .. "prioritized"

local jobKey = jobPrefix .. jobId
if redis.call("EXISTS", jobKey) == 0 then
  return -1
end
if redis.call("ZSCORE", activeKey, jobId) then
  return -3
end
-- Every job is in exactly one structure: scan the list only when no zset held it.
local found = redis.call("ZREM", prioritizedKey, jobId)
for i = 2, 4 do
  found = found + redis.call("ZREM", KEYS[i], jobId)
end
if found == 0 then
  redis.call("LREM", waitKey, 1, jobId)
end
-- Logs live in their own namespace (`logs:<id>`, beside `job:`): see QueueKeys.logs.
redis.call("DEL", jobKey, string.sub(jobPrefix, 1, -5) .. "logs:" .. jobId)
redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "removed", "jobId", jobId,
  "by", actor)
return 1
