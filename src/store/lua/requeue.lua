-- Put a running task back in the queue. Only if the record is unchanged since read.
-- KEYS: task, running, queue, seq. ARGV: old, new, priority, id.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[4])
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[3], (9 - tonumber(ARGV[3])) * 1e12 + seq, ARGV[4])
return 1
