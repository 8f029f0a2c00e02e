--[[
  Shared by the scripts a client may send twice (spliced in by engine/scripts.py where a
  script says `-- @include request`). redis-py resends a call whose reply it did not get
  (a timeout, a reset), and the first copy may already have been applied. A script that is
  not idempotent by construction takes a per-call request key in KEYS
  (`<prefix>:{<queue>}:req:<request id>`, QueueKeys.request): the first copy to run
  records its reply there for the resend window, and any later copy of the same call
  returns that reply and changes nothing. MessagePack keeps integers exact.
]]

-- The reply recorded by an earlier copy of this call, or nil when this copy is the first.
local function priorReply(requestKey)
  local raw = redis.call("GET", requestKey)
  if raw then
    return cmsgpack.unpack(raw)
  end
  return nil
end

-- Record `reply` for the resend window and return it (the script's last write).
local function recordReply(requestKey, windowMs, reply)
  redis.call("SET", requestKey, cmsgpack.pack(reply), "PX", windowMs)
  return reply
end
