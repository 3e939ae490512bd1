#!lua
-- Applies a batch of commits atomically, each fenced by its input's ack or its dedupe key.
--
-- ARGV header: n_commits, dedupe_ttl_s, then for streams 1..7 (soc.alerts .. soc.dead):
--   keys[7], names[7],
-- then per commit:
--   ack_stream (0 = no ack), ack_group, ack_id, dedupe_key ('' = none), n_outputs,
--   per output: stream, audited (1/0), then either 'D' and the five values of a domain
--   message (v, kind, id, corr, data), or n_fields and n_fields name/value pairs
-- Returns one status per commit: 1 applied, 2 duplicate dedupe key, 3 input already acked.
--
-- Fencing: XACK runs first; a commit whose input was not pending (acked before, by a restarted
-- or competing consumer, or by an earlier commit of this batch) writes nothing.
--
-- Retention is not applied here: `trim.lua` trims each stream apart, never past what a
-- consumer group still needs.
local a = ARGV
local n, ttl = tonumber(a[1]), a[2]
local key, name = {}, {}
for t = 1, 7 do
  key[t], name[t] = a[2 + t], a[9 + t]
end
local AUDIT = 6

local function add5(t, f1, v1, f2, v2, f3, v3, f4, v4, f5, v5)
  return redis.call('XADD', key[t], '*', f1, v1, f2, v2, f3, v3, f4, v4, f5, v5)
end

local function add7(t, f1, v1, f2, v2, f3, v3, f4, v4, f5, v5, f6, v6, f7, v7)
  return redis.call('XADD', key[t], '*',
    f1, v1, f2, v2, f3, v3, f4, v4, f5, v5, f6, v6, f7, v7)
end

local function addn(t, fields)
  return redis.call('XADD', key[t], '*', unpack(fields))
end

local i = 17
local result = {}
for c = 1, n do
  local status = 1
  local at = tonumber(a[i])
  if at ~= 0 and redis.call('XACK', key[at], a[i + 1], a[i + 2]) == 0 then
    status = 3
  end
  local dedupe = a[i + 3]
  if status == 1 and dedupe ~= '' and not redis.call('SET', dedupe, '1', 'NX', 'EX', ttl) then
    status = 2
  end
  local n_out = tonumber(a[i + 4])
  i = i + 5
  for o = 1, n_out do
    local t, audited, layout = tonumber(a[i]), a[i + 1] == '1', a[i + 2]
    local nf = layout == 'D' and 0 or tonumber(layout)
    i = i + 3
    if status == 1 then
      if layout == 'D' then
        local v, kind, mid, corr, data = a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 4]
        local id = add5(t, 'v', v, 'kind', kind, 'id', mid, 'corr', corr, 'data', data)
        if audited then
          add7(AUDIT, 'v', v, 'kind', kind, 'id', mid, 'corr', corr, 'data', data,
            'topic', name[t], 'topic_id', id)
        end
      else
        local fields = {}
        for f = 1, nf * 2 do fields[f] = a[i + f - 1] end
        local id = addn(t, fields)
        if audited then
          fields[#fields + 1] = 'topic'
          fields[#fields + 1] = name[t]
          fields[#fields + 1] = 'topic_id'
          fields[#fields + 1] = id
          addn(AUDIT, fields)
        end
      end
    end
    if layout == 'D' then i = i + 5 else i = i + nf * 2 end
  end
  result[c] = status
end
return result
