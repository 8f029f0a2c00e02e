--[[
  Recover jobs whose deadline in `active` has passed (their worker died or froze). A claim
  never confirmed (in `claims`: its worker never reported it running) goes back to the
  front of waiting as it was: not a stall. Any other goes back to the front of `wait` (no
  priority: LPUSH, in deadline order) or of its priority in `prioritized` with `stc` + 1,
  or to `failed` once `stc` exceeds the limit (then the job's removeOnFail retention). The
  token is cleared, so the old worker's late calls are refused. A guard key lets one
  instance do the check per interval.

  Error-atomic: the jobs' hashes (not knowable before) are read with redis.pcall before
  the first write; the batch stops at a job whose hash has moved to another Cluster node.

  KEYS[1] active      zset: score = deadline (ms)
  KEYS[2] wait        list
  KEYS[3] prioritized zset
  KEYS[4] failed      zset
  KEYS[5] events      stream
  KEYS[6] marker      zset: wakes a worker for the recovered jobs
  KEYS[7] stalled-check guard (string with PX)
  KEYS[8] claims      zset: claims not yet confirmed

  ARGV[1] job key prefix
  ARGV[2] max stalled count (a job stalled more often fails)
  ARGV[3] most jobs recovered per call
  ARGV[4] events stream max length
  ARGV[5] guard period (ms): skip if another call ran within it (0 = no guard)
  ARGV[6] failed jobs kept when a job's options say nothing (removeOnFail default)
  ARGV[7] most jobs removed by retention per call

  Returns {ids moved back to wait as stalled, ids failed, unconfirmed claims handed back}
]]
local activeKey, waitKey, prioritizedKey, failedKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local eventsKey, markerKey, guardKey, claimsKey = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local jobPrefix, maxStalled, batch = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local maxEvents, guardMs = ARGV[4], tonumber(ARGV[5])
local defaultKeep, retentionBatch = tonumber(ARGV[6]), tonumber(ARGV[7])
-- @include batch
-- @include waiting
-- @include retention

-- READ everything first.
if guardMs > 0 and redis.call("EXISTS", guardKey) == 1 then
  return {{}, {}, {}}
end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call("ZRANGEBYSCORE", activeKey, "-inf", now, "LIMIT", 0, batch)
local unconfirmed = zmscoreSliced(claimsKey, ids)
local gone, requeued, requeuedPri, failed, reclaimed, reclaimedPri = {}, {}, {}, {}, {}, {}
local stalledCounts, back, backPri = {}, {}, {}
local plan = retentionPlan(failedKey, jobPrefix, now, retentionBatch)
local lastOfSetting, settings, failedSetting = {}, {}, {}
for i, jobId in ipairs(ids) do
  local f = redis.pcall("HMGET", jobPrefix .. jobId, "ts", "stc", "pri", "opts")
  if not readable(f) then
    break -- moved mid-migration: recover the rest on a later call
  end
  gone[#gone + 1] = jobId
  if f[1] then
    local priority = tonumber(f[3]) or 0
    if unconfirmed[i] then
      reclaimed[#reclaimed + 1] = jobId
      back[#back + 1], backPri[#backPri + 1] = jobId, priority
    else
      local stalled = (tonumber(f[2]) or 0) + 1
      stalledCounts[jobId] = stalled
      if stalled > maxStalled then
        local keepCount, keepAgeMs = retentionOf(f[4], "removeOnFail", defaultKeep)
        failed[#failed + 1] = jobId
        local setting = keepCount .. ":" .. keepAgeMs
        failedSetting[jobId] = setting
        settings[setting] = {keepCount, keepAgeMs}
        lastOfSetting[setting] = jobId
      else
        requeued[#requeued + 1] = jobId
        back[#back + 1], backPri[#backPri + 1] = jobId, priority
      end
    end
  end
end
for _, jobId in ipairs(failed) do
  local setting = failedSetting[jobId]
  local keepCount, keepAgeMs = settings[setting][1], settings[setting][2]
  if keepCount == 0 then
    plan.drop(jobId)
  else
    plan.add(jobId)
  end
  if lastOfSetting[setting] == jobId and keepCount ~= 0 then
    plan.trim(keepCount, keepAgeMs)
  end
end
plan.resolve()

-- WRITE.
if guardMs > 0 then
  redis.call("SET", guardKey, "1", "PX", guardMs)
end
callSliced("ZREM", activeKey, gone)
callSliced("ZREM", claimsKey, gone)
for _, jobId in ipairs(reclaimed) do
  redis.call("HDEL", jobPrefix .. jobId, "tok")
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "released", "jobId",
    jobId, "reason", "claim not confirmed")
end
for _, jobId in ipairs(requeued) do
  redis.call("HSET", jobPrefix .. jobId, "stc", stalledCounts[jobId])
  redis.call("HDEL", jobPrefix .. jobId, "tok")
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "stalled", "jobId", jobId,
    "stalledCount", stalledCounts[jobId])
end
local reason = "job stalled more than allowable limit"
for _, jobId in ipairs(failed) do
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "stalled", "jobId", jobId,
    "stalledCount", stalledCounts[jobId])
  if not plan.removed(jobId) then
    redis.call("HSET", jobPrefix .. jobId, "stc", stalledCounts[jobId], "fr", reason, "fon", now)
    redis.call("HDEL", jobPrefix .. jobId, "tok")
  end
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "failed", "jobId",
    jobId, "failedReason", reason)
end
plan.write()
if #back > 0 then
  frontWaiting(waitKey, prioritizedKey, back, backPri)
  redis.call("ZADD", markerKey, 0, "w")
end
return {requeued, failed, reclaimed}
