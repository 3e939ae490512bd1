-- Takes one of an endpoint's slots for a call, or queues the call as a waiter.
-- KEYS[1] leases (zset: lease id -> expiry ms), KEYS[2] waiters (zset: id -> priority key),
-- KEYS[3] waiter expiries (zset: id -> expiry ms).
-- ARGV: id, max_in_flight, lease_ms, priority key (lower = more urgent), waiter_ttl_ms.
-- Returns the slots held after the call: >= 1 when this call got a slot, -1 - held when it
-- waits (a more urgent or earlier waiter, or no free slot). Time is the server's.
local leases, waiters, wexp = KEYS[1], KEYS[2], KEYS[3]
local id = ARGV[1]
local max = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local prio = tonumber(ARGV[4])
local wttl = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Leases of holders that died lapse here.
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', wexp, '-inf', now)
for _, w in ipairs(gone) do
  redis.call('ZREM', waiters, w)
  redis.call('ZREM', wexp, w)
end
local held = redis.call('ZCARD', leases)
if redis.call('ZSCORE', leases, id) then
  return held
end
local free = max - held
if free > 0 then
  local ahead = redis.call('ZCOUNT', waiters, '-inf', '(' .. prio)
  if ahead < free then
    redis.call('ZADD', leases, now + lease, id)
    redis.call('PEXPIRE', leases, lease * 2)
    redis.call('ZREM', waiters, id)
    redis.call('ZREM', wexp, id)
    return held + 1
  end
end
redis.call('ZADD', waiters, prio, id)
redis.call('ZADD', wexp, now + wttl, id)
redis.call('PEXPIRE', waiters, wttl * 2)
redis.call('PEXPIRE', wexp, wttl * 2)
return -1 - held
