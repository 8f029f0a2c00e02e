--[[
  Renew the leases of all the jobs one worker runs, in one call. A lease is renewed only
  if the job is still active under the caller's token; the others are reported lost.

  KEYS[1] active    zset: score = lease deadline (ms)

  ARGV[1] job key prefix
  ARGV[2] lease duration (ms)
  ARGV[3..] pairs: job id, lease token

  Returns the lost leases as {job id, token, cancelled} triples (a worker may hold a new
  attempt of a job whose old attempt it lost, so the id alone is ambiguous); cancelled is
  1 when cancel_job ended that very attempt (`cxl` = its token), else 0. This is how a
  worker that missed the cancel message learns of it (engine/worker/cancel.py).
]]
local activeKey = KEYS[1]
local jobPrefix, leaseMs = ARGV[1], tonumber(ARGV[2])

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local lost = {}
for i = 3, #ARGV, 2 do
  local jobId, token = ARGV[i], ARGV[i + 1]
  if redis.call("HGET", jobPrefix .. jobId, "tok") == token
      and redis.call("ZSCORE", activeKey, jobId) then
    redis.call("ZADD", activeKey, "XX", now + leaseMs, jobId)
  else
    local cancelled = redis.call("HGET", jobPrefix .. jobId, "cxl") == token and 1 or 0
    lost[#lost + 1] = {jobId, token, cancelled}
  end
end
return lost
