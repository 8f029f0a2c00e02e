--[[
  Recover jobs whose lease deadline has passed (their worker died or froze): back to the
  front of `wait` (no priority: LPUSH) or of their priority in `prioritized`, with `stc` + 1, or to `failed` once `stc` exceeds the
  limit. The token is cleared, so the old worker's late calls are refused. A guard key
  lets one instance do the check per interval.

  KEYS[1] active    zset: score = lease deadline (ms)
  KEYS[2] wait      list (its sibling `prioritized`, zset, is derived from this key)
  KEYS[3] failed    zset
  KEYS[4] events    stream
  KEYS[5] marker    zset: wakes a worker for the recovered jobs
  KEYS[6] stalled-check guard (string with PX)

  ARGV[1] job key prefix
  ARGV[2] max stalled count (a job stalled more often fails)
  ARGV[3] most jobs recovered per call
  ARGV[4] events stream max length
  ARGV[5] guard period (ms): skip if another call ran within it (0 = no guard)

  Returns {ids moved back to wait, ids failed}
]]
local activeKey, waitKey, failedKey = KEYS[1], KEYS[2], KEYS[3]
local eventsKey, markerKey, guardKey = KEYS[4], KEYS[5], KEYS[6]
local jobPrefix, maxStalled, batch = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local maxEvents, guardMs = ARGV[4], tonumber(ARGV[5])
-- `prioritized` is derived from the `wait` key rather than passed in KEYS (same hash tag,
-- so same slot, as job keys built from the prefix): see docs/ARCHITECTURE.md.
local prioritizedKey = string.sub(waitKey, 1, -5) .. "prioritized"
-- @include waiting

if guardMs > 0 and not redis.call("SET", guardKey, "1", "NX", "PX", guardMs) then
  return {{}, {}}
end

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local requeued, failed = {}, {}
local ids = redis.call("ZRANGEBYSCORE", activeKey, "-inf", now, "LIMIT", 0, batch)
for _, jobId in ipairs(ids) do
  local jobKey = jobPrefix .. jobId
  redis.call("ZREM", activeKey, jobId)
  if redis.call("EXISTS", jobKey) == 1 then
    local stalled = redis.call("HINCRBY", jobKey, "stc", 1)
    redis.call("HDEL", jobKey, "tok")
    redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "stalled", "jobId", jobId,
      "stalledCount", stalled)
    if stalled > maxStalled then
      local reason = "job stalled more than allowable limit"
      redis.call("HSET", jobKey, "fr", reason, "fon", now)
      redis.call("ZADD", failedKey, now, jobId)
      redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "failed", "jobId",
        jobId, "failedReason", reason)
      failed[#failed + 1] = jobId
    else
      -- Back to the front (it was started before every job still waiting), below.
      requeued[#requeued + 1] = jobId
    end
  end
end
if #requeued > 0 then
  pushFront(jobPrefix, waitKey, prioritizedKey, requeued)
  redis.call("ZADD", markerKey, 0, "w")
end
return {requeued, failed}
