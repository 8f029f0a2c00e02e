--[[
  Append a line to a running job's log (`logs:<id>`, capped to the newest lines).
  Refused unless the caller holds the job's lease.

  KEYS[1] active    zset

  ARGV[1] job key prefix
  ARGV[2] job id
  ARGV[3] lease token
  ARGV[4] log line
  ARGV[5] most lines kept

  Returns the number of lines kept, or -2 when the lease is lost
]]
local activeKey = KEYS[1]
local jobPrefix, jobId, token, line, maxLines = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])

local jobKey = jobPrefix .. jobId
-- Logs live in their own namespace (`logs:<id>`, beside `job:`): see QueueKeys.logs.
local logsKey = string.sub(jobPrefix, 1, -5) .. "logs:" .. jobId
if redis.call("HGET", jobKey, "tok") ~= token or not redis.call("ZSCORE", activeKey, jobId) then
  return -2
end
local n = redis.call("RPUSH", logsKey, line)
if n > maxLines then
  redis.call("LTRIM", logsKey, -maxLines, -1)
  n = maxLines
end
return n
