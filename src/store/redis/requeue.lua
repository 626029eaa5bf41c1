-- Put a running task back in the queue, or, with a retry time, in the delayed set until then.
-- Only if the record is unchanged since read.
-- (Takes an event, see events.lua.) KEYS: task, running, queue, seq, delayed. ARGV: old, new, priority, id, retry_at (0: now).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[4])
if tonumber(ARGV[5]) > 0 then
  redis.call('ZADD', KEYS[5], ARGV[5], ARGV[4])
else
  local seq = redis.call('INCR', KEYS[4])
  redis.call('ZADD', KEYS[3], (9 - tonumber(ARGV[3])) * 1e12 + seq, ARGV[4])
end
emit()
return 1
