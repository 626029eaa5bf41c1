-- Changes a schedule. Its definition (JSON, written by Rust and never re-encoded here) is a
-- field of the definitions hash; what changes (paused, through, fired, skipped, last_task,
-- last_fired_at) is its own hash, so numbers are never rounded by a JSON round trip.
-- KEYS: definitions hash, the schedule's state hash. ARGV[1]: the operation, ARGV[2]: name.
--   create  ARGV: definition json, through, paused ('1' or '0'), most schedules
--                                          -> 0 if the name is taken, 2 if there are as many
--                                             schedules as the most
--   delete                                                        -> 0 if missing
--   pause   ARGV: paused ('1' or '0'), now (whole seconds)        -> 0 if missing
--   advance ARGV: through, task id ('' when skipped), now, due times -> 0 if missing
local op, name = ARGV[1], ARGV[2]
if op == 'create' then
  if redis.call('HEXISTS', KEYS[1], name) == 1 then
    return 0
  end
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[6]) then
    return 2
  end
  redis.call('HSET', KEYS[1], name, ARGV[3])
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'through', ARGV[4], 'paused', ARGV[5], 'fired', 0, 'skipped', 0)
  return 1
end
if op == 'delete' then
  redis.call('DEL', KEYS[2])
  return redis.call('HDEL', KEYS[1], name)
end
if redis.call('HEXISTS', KEYS[1], name) == 0 then
  return 0
end
local through = tonumber(redis.call('HGET', KEYS[2], 'through') or '0')
if op == 'pause' then
  if ARGV[3] == '0' and redis.call('HGET', KEYS[2], 'paused') == '1' then
    redis.call('HSET', KEYS[2], 'through', math.max(through, tonumber(ARGV[4])))
  end
  redis.call('HSET', KEYS[2], 'paused', ARGV[3])
  return 1
end
if op == 'advance' then
  if tonumber(ARGV[3]) > through then
    redis.call('HSET', KEYS[2], 'through', ARGV[3])
    if ARGV[4] ~= '' then
      redis.call('HINCRBY', KEYS[2], 'fired', 1)
      redis.call('HSET', KEYS[2], 'last_task', ARGV[4], 'last_fired_at', ARGV[5])
    else
      redis.call('HINCRBY', KEYS[2], 'skipped', ARGV[6])
    end
  end
  return 1
end
return redis.error_reply('unknown schedule operation ' .. op)
