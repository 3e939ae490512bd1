#!lua
-- Trims one stream to its retention, never past the oldest entry a consumer group still needs:
-- its oldest pending entry, else the first entry after the last one it read. Redis 7.0 cannot
-- bound XTRIM by the groups' state itself, so this script computes the bound and trims below it.
--
-- KEYS[1]: the stream.
-- ARGV[1]: 'MAXLEN' or 'MINID'; ARGV[2]: the length to keep, or the id below which entries are
-- old enough to drop; ARGV[3]: most entries one MAXLEN call drops (the rest on the next call).
-- Returns {dropped, held, floor}: entries dropped; 1 when retention wanted entries some group
-- still needs (they were kept), else 0; the bound ('' without groups).
local key, kind, arg, batch = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', key) == 0 then
  return {0, 0, ''}
end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end

local function after(id)
  local ms, seq = parse(id)
  return string.format('%d-%d', ms, seq + 1)
end

local floor = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  local name, last
  for f = 1, #group, 2 do
    if group[f] == 'name' then
      name = group[f + 1]
    elseif group[f] == 'last-delivered-id' then
      last = group[f + 1]
    end
  end
  local pending = redis.call('XPENDING', key, name)
  local needed
  if pending[1] > 0 then
    needed = pending[2]
  else
    needed = after(last)
  end
  if floor == nil or less(needed, floor) then
    floor = needed
  end
end

local target = nil
if kind == 'MINID' then
  target = arg
else
  local excess = redis.call('XLEN', key) - tonumber(arg)
  if excess <= 0 then
    return {0, 0, floor or ''}
  end
  local n = math.min(excess, batch)
  local first = redis.call('XRANGE', key, '-', '+', 'COUNT', n + 1)
  if #first < n + 1 then
    return {0, 0, floor or ''}
  end
  target = first[n + 1][1]
end

local held = 0
if floor ~= nil and less(floor, target) then
  if #redis.call('XRANGE', key, floor, '(' .. target, 'COUNT', 1) > 0 then
    held = 1
  end
  target = floor
end
local dropped = redis.call('XTRIM', key, 'MINID', target)
return {dropped, held, floor or ''}
