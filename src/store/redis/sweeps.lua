-- Changes a sweep, each change with its events. The record (JSON, written by Rust and never
-- re-encoded here) and its version are fields of the sweep's hash.
-- KEYS: the sweeps' sorted set, the sweep's hash, its rung results' hash, its events' list,
-- the running sweeps' sorted set.
-- ARGV[1]: the operation, ARGV[2]: the sweep's id.
--   create  ARGV: record, created at, most sweeps, event     -> 1, or 2 if there are as many
--                                                              sweeps as the most
--   update  ARGV: record, version, running ('1' or '0'), events...
--                                                            -> 1, or 0 if the version moved
--   delete                                                   -> 0 if missing
--   rung    ARGV: field (STEP/TRIAL), value/go_on, results seen, event
--                                 -> the decision already made ('1' or '0'), the one given
--                                    here once stored, or 'retry' if a result came meanwhile
local op, id = ARGV[1], ARGV[2]
if op == 'create' then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then
    return 2
  end
  redis.call('ZADD', KEYS[1], ARGV[4], id)
  redis.call('ZADD', KEYS[5], ARGV[4], id)
  redis.call('DEL', KEYS[3], KEYS[4])
  redis.call('HSET', KEYS[2], 'record', ARGV[3], 'version', 1)
  redis.call('RPUSH', KEYS[4], ARGV[6])
  return 1
end
if op == 'delete' then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  redis.call('ZREM', KEYS[5], id)
  return redis.call('ZREM', KEYS[1], id)
end
if op == 'update' then
  local version = tonumber(ARGV[4])
  if tonumber(redis.call('HGET', KEYS[2], 'version')) ~= version - 1 then
    return 0
  end
  redis.call('HSET', KEYS[2], 'record', ARGV[3], 'version', version)
  if ARGV[5] == '0' then
    redis.call('ZREM', KEYS[5], id)
  end
  for i = 6, #ARGV do
    redis.call('RPUSH', KEYS[4], ARGV[i])
  end
  return 1
end
if op == 'rung' then
  local made = redis.call('HGET', KEYS[3], ARGV[3])
  if made then
    return string.sub(made, -1)
  end
  if redis.call('HLEN', KEYS[3]) ~= tonumber(ARGV[5]) then
    return 'retry'
  end
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
  redis.call('RPUSH', KEYS[4], ARGV[6])
  return string.sub(ARGV[4], -1)
end
return redis.error_reply('unknown sweep operation ' .. op)
