-- Take queued task ARGV[3] for a trainer, if it is still queued and its record unchanged.
-- (Takes an event, see events.lua.) KEYS: task, queue, running. ARGV: old record, new record, id, lease.
if redis.call('ZSCORE', KEYS[2], ARGV[3]) == false or redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
emit()
return 1
