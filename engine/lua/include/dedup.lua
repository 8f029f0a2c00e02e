--[[
  Shared by the scripts that finish jobs (spliced in by engine/scripts.py where a script
  says `-- @include dedup`; needs `-- @include batch` first, for `readable`). A job added
  with a deduplication id and no ttl (engine/dedup.py) opened a window `dedup:<id>`
  (keys.py: QueueKeys.dedup) holding its job id, without expiry, and has the id in its
  hash field `dd`. When the job finishes the window closes: the key is deleted if it still
  holds this job and has no expiry (an add with a ttl may have taken it over since).

    local release = dedupRelease(jobPrefix, jobId, ddField)   -- READ, before any write
    if release then redis.call("DEL", release) end            -- WRITE

  The key is read with `redis.pcall` (it is not declared: the id is only known once the
  hash is read); a key that cannot be read here is left alone, and the next add with that
  id finds its job finished and opens a new window (lua/add_job-7+.lua).
]]

local function dedupKeyOf(jobPrefix, dedupId)
  return string.sub(jobPrefix, 1, -5) .. "dedup:" .. dedupId
end

-- The dedup key to delete when job `jobId` (hash field `dd` = `dedupId`) finishes, or nil.
local function dedupRelease(jobPrefix, jobId, dedupId)
  if not dedupId then
    return nil
  end
  local key = dedupKeyOf(jobPrefix, dedupId)
  local holder = redis.pcall("GET", key)
  if not readable(holder) or holder ~= jobId then
    return nil
  end
  local ttl = redis.pcall("PTTL", key)
  if not readable(ttl) or ttl ~= -1 then
    return nil
  end
  return key
end
