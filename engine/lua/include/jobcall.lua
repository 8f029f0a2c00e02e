--[[
  Shared by the admin scripts on one job (cancel, promote, remove, retry; spliced in where a
  script says `-- @include jobcall`, after `request` and `jobstate`): how each one opens,
  reading only.
]]

-- The first copy's reply when this call is a resend, {-1, ""} when the job does not
-- exist; else nil and the job's state. `stateKeys`: wait, prioritized, active, delayed,
-- completed, failed.
local function openJobCall(requestKey, jobKey, jobId, stateKeys)
  local prior = priorReply(requestKey)
  if prior then
    return prior
  end
  if redis.call("EXISTS", jobKey) == 0 then
    return {-1, ""}
  end
  return nil, jobState(jobId, unpack(stateKeys))
end
