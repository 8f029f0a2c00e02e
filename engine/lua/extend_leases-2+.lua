--[[
  Renew the leases of the jobs one worker runs, in one call; this also confirms claims
  (a job claimed holds `active` only for the short claim deadline until its worker
  confirms it is running). A lease is renewed only if the job is still active under the
  caller's token. A job this very attempt already finished (token still its own, no longer
  active: a finish crossed this call) is neither renewed nor lost; the others are lost.

  Error-atomic: every key is declared and read before the first write; sending it twice
  only renews twice.

  KEYS[1] active    zset: score = lease deadline (ms)
  KEYS[2] claims    zset: claims not yet confirmed
  KEYS[3..]         the hash of each job, in ARGV order (KEYS[2 + i] for the i-th)

  ARGV[1] lease duration (ms)
  ARGV[2..] pairs: job id, lease token

  Returns the lost leases as {job id, token} pairs (a worker may hold a new attempt of a
  job whose old attempt it lost, so the id alone is ambiguous), as {job id, token,
  "cancelled"} the attempts cancel_job ended (token still its own, `cxl` = the token): how
  a worker that missed the cancel message learns of it (engine/worker/cancel.py), and as
  {job id, token, "gone"} jobs whose hash no longer exists: most often this attempt's own
  finish deleted it (removeOn*: true) while the renewal was on its way; else it was
  removed. Either way there is nothing left to renew and no lease to warn of.
]]
local activeKey, claimsKey = KEYS[1], KEYS[2]
local leaseMs = tonumber(ARGV[1])
local n = (#ARGV - 1) / 2
if n ~= #KEYS - 2 then
  return redis.error_reply("ERR extend_leases: one job hash per job expected in KEYS")
end
-- @include batch

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- READ.
local ids = {}
for i = 1, n do
  ids[i] = ARGV[2 * i]
end
local scores = zmscoreSliced(activeKey, ids)
local lost, renew, renewed = {}, {}, {}
for i = 1, n do
  local id, token = ids[i], ARGV[2 * i + 1]
  local held = redis.call("HGET", KEYS[2 + i], "tok")
  if not held and redis.call("EXISTS", KEYS[2 + i]) == 0 then
    lost[#lost + 1] = {id, token, "gone"}
  elseif held == token then
    if scores[i] then
      renew[#renew + 1] = now + leaseMs
      renew[#renew + 1] = id
      renewed[#renewed + 1] = id
    elseif redis.call("HGET", KEYS[2 + i], "cxl") == token then
      lost[#lost + 1] = {id, token, "cancelled"}
    end
  else
    lost[#lost + 1] = {id, token}
  end
end

-- WRITE.
if #renew > 0 then
  for s = 1, #renew, BATCH_SLICE do
    redis.call("ZADD", activeKey, "XX", unpack(renew, s, math.min(s + BATCH_SLICE - 1, #renew)))
  end
  callSliced("ZREM", claimsKey, renewed)
end
return lost
