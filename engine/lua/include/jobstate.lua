--[[
  Shared by the scripts that name the state a job is in (spliced in by engine/scripts.py
  where a script says `-- @include jobstate`). Every job sits in exactly one of `wait`
  (list), `prioritized`, `active`, `delayed`, `completed`, `failed` (zsets), so a job found
  in none of them is `orphaned`: a lost job, shown as such rather than as waiting.

  The zsets cost O(log N) each. The list is searched only for a job in no zset, from both
  ends first (a job near the head is about to run, one near the tail was just added):
  bounded at `LIST_PROBE` entries each, so a job in a short list or near either end costs
  O(1); only a job deep inside a longer list costs a full LPOS, O(N) in its length.
]]

local LIST_PROBE = 1000

local function inWaitList(waitKey, jobId)
  if redis.call("LPOS", waitKey, jobId, "MAXLEN", LIST_PROBE) then
    return true
  end
  local length = redis.call("LLEN", waitKey)
  if length <= LIST_PROBE then
    return false
  end
  if redis.call("LPOS", waitKey, jobId, "RANK", -1, "MAXLEN", LIST_PROBE) then
    return true
  end
  if length <= 2 * LIST_PROBE then
    return false
  end
  return redis.call("LPOS", waitKey, jobId) ~= false
end

-- The state of a job whose hash exists: a JobState value, or "orphaned".
local function jobState(jobId, waitKey, prioritizedKey, activeKey, delayedKey, completedKey,
                        failedKey)
  if redis.call("ZSCORE", activeKey, jobId) then
    return "active"
  end
  if redis.call("ZSCORE", prioritizedKey, jobId) then
    return "waiting"
  end
  if redis.call("ZSCORE", delayedKey, jobId) then
    return "delayed"
  end
  if redis.call("ZSCORE", completedKey, jobId) then
    return "completed"
  end
  if redis.call("ZSCORE", failedKey, jobId) then
    return "failed"
  end
  if inWaitList(waitKey, jobId) then
    return "waiting"
  end
  return "orphaned"
end
