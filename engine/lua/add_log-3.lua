--[[
  Append a line to a running job's log (capped to the newest lines). Refused unless the
  caller holds the job's lease. Each line of an attempt carries its sequence number
  (1, 2, ...; the worker sends one at a time per attempt): a line whose number this
  attempt already wrote is a resend and is not appended again.

  KEYS[1] active    zset
  KEYS[2] the job's hash (field `lsq` = "<last sequence>:<token>")
  KEYS[3] the job's log list

  ARGV[1] job id
  ARGV[2] lease token
  ARGV[3] log line
  ARGV[4] most lines kept
  ARGV[5] sequence number of this line in the attempt

  Returns the number of lines kept, or -2 when the lease is lost
]]
local activeKey, jobKey, logsKey = KEYS[1], KEYS[2], KEYS[3]
local jobId, token, line, maxLines = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local seq = tonumber(ARGV[5])

local f = redis.call("HMGET", jobKey, "tok", "lsq")
if f[1] ~= token or not redis.call("ZSCORE", activeKey, jobId) then
  return -2
end
if f[2] then
  local last, owner = string.match(f[2], "^(%d+):(.*)$")
  if owner == token and tonumber(last) >= seq then
    return math.min(redis.call("LLEN", logsKey), maxLines)
  end
end
local n = redis.call("RPUSH", logsKey, line)
if n > maxLines then
  redis.call("LTRIM", logsKey, -maxLines, -1)
  n = maxLines
end
redis.call("HSET", jobKey, "lsq", seq .. ":" .. token)
return n
