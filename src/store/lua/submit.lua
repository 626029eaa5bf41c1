-- Store a new task and queue it, unless the queue is full.
-- KEYS: task, queue, seq, index. ARGV: record json, priority, submitted_at, queue limit, id.
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  return 'full'
end
redis.call('SET', KEYS[1], ARGV[1])
local seq = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[2], (9 - tonumber(ARGV[2])) * 1e12 + seq, ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[5])
return 'ok'
