"""The Lua scripts behind bot/scheduler_redis.py: each grant or removal is one atomic script.

Keys under the prefix ``P`` (one Redis server, not Cluster: scripts touch keys they derive):
``P:q:<owner>`` that owner's waiting job ids (FIFO); ``P:ring`` owners with waiting jobs, in
rotation order; ``P:orun`` running count per owner; ``P:nrun`` / ``P:nq`` running and waiting
in all; ``P:jobs`` id -> "process<TAB>owner<TAB>q|r"; ``P:pj:<process>`` a process's ids;
``P:procs`` registered processes; ``P:alive:<process>`` its lease (expires unless renewed).
A grant is published on ``P:ch:<process>`` as ``grant <id>``; any change on ``P:ch:all``.
"""

from __future__ import annotations

#: Shared by the scripts that free a slot: start waiting jobs, next eligible owner in rotation.
_PUMP = r"""
local function num(v) return tonumber(v) or 0 end
local function pump(p, glob, per)
  local grants = {}
  while num(redis.call('GET', p .. 'nrun')) < glob do
    local chosen = nil
    for _, o in ipairs(redis.call('LRANGE', p .. 'ring', 0, -1)) do
      if num(redis.call('HGET', p .. 'orun', o)) < per then chosen = o; break end
    end
    if chosen == nil then break end
    local id = redis.call('LPOP', p .. 'q:' .. chosen)
    redis.call('LREM', p .. 'ring', 1, chosen)
    if redis.call('LLEN', p .. 'q:' .. chosen) > 0 then redis.call('RPUSH', p .. 'ring', chosen) end
    redis.call('DECR', p .. 'nq')
    redis.call('INCR', p .. 'nrun')
    redis.call('HINCRBY', p .. 'orun', chosen, 1)
    local proc = string.match(redis.call('HGET', p .. 'jobs', id), '^([^\t]*)')
    redis.call('HSET', p .. 'jobs', id, proc .. '\t' .. chosen .. '\tr')
    redis.call('PUBLISH', p .. 'ch:' .. proc, 'grant ' .. id)
    table.insert(grants, proc)
    table.insert(grants, id)
  end
  return grants
end
local function remove(p, id)
  local rec = redis.call('HGET', p .. 'jobs', id)
  if not rec then return 'gone' end
  local proc, owner, state = string.match(rec, '^([^\t]*)\t(.*)\t([qr])$')
  if state == 'r' then
    redis.call('DECR', p .. 'nrun')
    if redis.call('HINCRBY', p .. 'orun', owner, -1) <= 0 then redis.call('HDEL', p .. 'orun', owner) end
  else
    redis.call('LREM', p .. 'q:' .. owner, 1, id)
    if redis.call('LLEN', p .. 'q:' .. owner) == 0 then redis.call('LREM', p .. 'ring', 1, owner) end
    redis.call('DECR', p .. 'nq')
  end
  redis.call('HDEL', p .. 'jobs', id)
  redis.call('SREM', p .. 'pj:' .. proc, id)
  return state
end
"""

#: ARGV: prefix, id, owner, process, global, per_owner, per_owner_queued, queue_size.
#: -> {"run"} | {"queued"} | {"many", waiting} | {"full"} | {"dup"}
ADMIT = _PUMP + r"""
local p, id, owner, proc = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local glob, per, perq, size = num(ARGV[5]), num(ARGV[6]), num(ARGV[7]), num(ARGV[8])
if redis.call('HEXISTS', p .. 'jobs', id) == 1 then return {'dup'} end
local mine = num(redis.call('HGET', p .. 'orun', owner))
local waiting = redis.call('LLEN', p .. 'q:' .. owner)
redis.call('SADD', p .. 'pj:' .. proc, id)
if num(redis.call('GET', p .. 'nrun')) < glob and mine < per and waiting == 0 then
  redis.call('INCR', p .. 'nrun')
  redis.call('HINCRBY', p .. 'orun', owner, 1)
  redis.call('HSET', p .. 'jobs', id, proc .. '\t' .. owner .. '\tr')
  redis.call('PUBLISH', p .. 'ch:all', 'changed')
  return {'run'}
end
local verdict = nil
if waiting >= perq and (waiting > 0 or mine > 0) then verdict = {'many', waiting}
elseif num(redis.call('GET', p .. 'nq')) >= size or waiting >= perq then verdict = {'full'} end
if verdict then
  redis.call('SREM', p .. 'pj:' .. proc, id)
  return verdict
end
redis.call('RPUSH', p .. 'q:' .. owner, id)
if waiting == 0 then redis.call('RPUSH', p .. 'ring', owner) end
redis.call('INCR', p .. 'nq')
redis.call('HSET', p .. 'jobs', id, proc .. '\t' .. owner .. '\tq')
redis.call('PUBLISH', p .. 'ch:all', 'changed')
return {'queued'}
"""

#: Release a running job's slots or take a waiting one out, then grant what fits.
#: ARGV: prefix, id, global, per_owner -> {state ("q", "r" or "gone"), process, id, process, id...}
REMOVE = _PUMP + r"""
local p = ARGV[1]
local state = remove(p, ARGV[2])
local out = {state}
if state ~= 'gone' then
  for _, v in ipairs(pump(p, num(ARGV[3]), num(ARGV[4]))) do table.insert(out, v) end
  redis.call('PUBLISH', p .. 'ch:all', 'changed')
end
return out
"""

#: Processes whose lease key expired: drop their waiting jobs, free their running slots, grant.
#: Atomic, so of many processes sweeping at once exactly one frees each dead process's slots.
#: ARGV: prefix, global, per_owner -> {dead count, process, id, process, id...}
SWEEP = _PUMP + r"""
local p = ARGV[1]
local dead = 0
for _, proc in ipairs(redis.call('SMEMBERS', p .. 'procs')) do
  if redis.call('EXISTS', p .. 'alive:' .. proc) == 0 then
    for _, id in ipairs(redis.call('SMEMBERS', p .. 'pj:' .. proc)) do remove(p, id) end
    redis.call('DEL', p .. 'pj:' .. proc)
    redis.call('SREM', p .. 'procs', proc)
    dead = dead + 1
  end
end
local out = {dead}
if dead > 0 then
  for _, v in ipairs(pump(p, num(ARGV[2]), num(ARGV[3]))) do table.insert(out, v) end
  redis.call('PUBLISH', p .. 'ch:all', 'changed')
end
return out
"""

#: Renew this process's lease. ARGV: prefix, process, lease ms -> 1 if it had been swept away.
BEAT = r"""
local p, proc = ARGV[1], ARGV[2]
redis.call('SET', p .. 'alive:' .. proc, '1', 'PX', ARGV[3])
return redis.call('SADD', p .. 'procs', proc)
"""

#: Waiting jobs numbered in round-robin start order, and the counts.
#: ARGV: prefix -> {queued, running, {owner, running...}, {owner, waiting...}, {id, position...}}
STATE = r"""
local p = ARGV[1]
local ring = redis.call('LRANGE', p .. 'ring', 0, -1)
local lists, waiting, positions = {}, {}, {}
for i, o in ipairs(ring) do
  lists[i] = redis.call('LRANGE', p .. 'q:' .. o, 0, -1)
  table.insert(waiting, o)
  table.insert(waiting, #lists[i])
end
local position, round = 0, 1
while true do
  local any = false
  for i = 1, #lists do
    local id = lists[i][round]
    if id then
      any = true
      position = position + 1
      table.insert(positions, id)
      table.insert(positions, position)
    end
  end
  if not any then break end
  round = round + 1
end
return {tonumber(redis.call('GET', p .. 'nq')) or 0, tonumber(redis.call('GET', p .. 'nrun')) or 0,
        redis.call('HGETALL', p .. 'orun'), waiting, positions}
"""
