-- Store a new task and queue it, unless the queue is full.
-- KEYS: task, queue of its device class, seq, index, then every class's queue.
-- ARGV: record json, priority, submitted_at, queue limit, id.
local depth = 0
for i = 5, #KEYS do
  depth = depth + redis.call('ZCARD', KEYS[i])
end
if depth >= tonumber(ARGV[4]) then
  return 'full'
end
redis.call('SET', KEYS[1], ARGV[1])
local seq = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[2], (9 - tonumber(ARGV[2])) * 1e12 + seq, ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[5])
return 'ok'
