--[[
  Create or replace a schedule, idempotently: the same definition (same fingerprint) is a
  no-op, so N instances registering together leave exactly one schedule, and a resend finds
  its own first copy applied. A changed definition replaces the old one and its next fire
  time; the old fingerprint and next time no longer match, so a fire computed from the old
  definition is refused. A schedule set aside (unreadable where it was to fire) is taken
  back by a new definition. A fire-count `limit` already reached by the schedule's `fired`
  count (kept across redefinitions) ends it at once; a raised limit lets it fire again.

  KEYS[1] schedules   zset: schedule name -> next fire ms (+inf: paused or ended)
  KEYS[2] schedule    hash: `def` (JSON), `fp`, `next`, `jobName`, `data`, `opts`, `pri`,
                      `overlap`, `created`, `updated`, and (written by fires) `last`,
                      `lastJob`, `lastFiredAt`, `fired`, `missed`, `missedAtLeast`,
                      `limitEnded`; `source` (`declared` / `api`), `paused` when paused;
                      `aside` (the reason) when set aside; `limit` when it has one
  KEYS[3] events      stream
  KEYS[4] aside       set: names of the queue's schedules set aside

  ARGV[1] schedule name
  ARGV[2] fingerprint of the whole definition
  ARGV[3] definition (JSON)
  ARGV[4] job name
  ARGV[5] job data (JSON)
  ARGV[6] job options (JSON)
  ARGV[7] priority (0 = none)
  ARGV[8] overlap policy ("allow" / "skip")
  ARGV[9] next fire ms, or "" when the schedule never fires again
  ARGV[10] events stream max length (approximate)
  ARGV[11] why: "register" (declared in a config), "restore" (a declaring instance found it
           missing or outdated: the events then say `missing` / `restored`), or "api" (an
           operator's call: refused for a declared schedule, whose source is its config)
  ARGV[12] fire-count limit, or "" for none
  ARGV[13] who asked (the audit's `by`), or "" for a registration

  Returns {0, next, updated ms} unchanged, {1, next, now} created, {2, next, now} replaced,
  {-1, next, updated ms} refused (an "api" change to a declared schedule); next is "" when
  the schedule never fires again (ARGV[9] "", or its limit reached)
]]
local schedulesKey, scheduleKey, eventsKey, asideKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local name, fingerprint, def, jobName, data = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local opts, priority, overlap, nextFire, maxEvents = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local why, limit, by = ARGV[11], ARGV[12] or "", ARGV[13] or ""

local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local current = redis.call("HMGET", scheduleKey, "fp", "next", "paused", "updated", "source",
  "fired")
if why == "api" and current[1] and current[5] ~= "api" then
  return {-1, current[2] or "", tonumber(current[4] or "0")}
end
if current[1] == fingerprint then
  return {0, current[2] or "", tonumber(current[4] or "0")}
end
local result = current[1] and 2 or 1
if limit ~= "" and tonumber(current[6] or "0") >= tonumber(limit) then
  nextFire = ""
end
redis.call("HSET", scheduleKey, "def", def, "fp", fingerprint, "jobName", jobName, "data", data,
  "opts", opts, "pri", priority, "overlap", overlap, "next", nextFire, "updated", now,
  "source", why == "api" and "api" or "declared")
redis.call("HDEL", scheduleKey, "aside", "limitEnded")
if limit == "" then
  redis.call("HDEL", scheduleKey, "limit")
else
  redis.call("HSET", scheduleKey, "limit", limit)
end
redis.call("SREM", asideKey, name)
if result == 1 then
  redis.call("HSET", scheduleKey, "created", now)
end
if nextFire == "" or current[3] then
  -- Ended or paused: listed, never due.
  redis.call("ZADD", schedulesKey, "+inf", name)
else
  redis.call("ZADD", schedulesKey, nextFire, name)
end
local action = result == 1 and "created" or "updated"
if why == "restore" then
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "schedule",
    "schedule", name, "action", result == 1 and "missing" or "outdated")
  action = "restored"
end
if by == "" then
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "schedule",
    "schedule", name, "action", action, "next", nextFire)
else
  redis.call("XADD", eventsKey, "MAXLEN", "~", maxEvents, "*", "event", "schedule",
    "schedule", name, "action", action, "next", nextFire, "by", by)
end
return {result, nextFire, now}
