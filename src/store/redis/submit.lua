-- Store a new task and queue it, unless the queue is full or its idempotency key was used.
-- (Takes an event, see events.lua.) KEYS: task, queue of its device class, seq, index, idempotency key, then every class's queue.
-- ARGV: record json, priority, submitted_at, queue limit, id, idempotency value ('' for no
-- key), idempotency ttl in seconds.
if ARGV[6] ~= '' then
  local existing = redis.call('GET', KEYS[5])
  if existing then
    return 'used ' .. existing
  end
end
local depth = 0
for i = 6, #KEYS do
  depth = depth + redis.call('ZCARD', KEYS[i])
end
if depth >= tonumber(ARGV[4]) then
  return 'full'
end
redis.call('SET', KEYS[1], ARGV[1])
local seq = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[2], (9 - tonumber(ARGV[2])) * 1e12 + seq, ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[5])
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[5], ARGV[6], 'EX', ARGV[7])
end
emit()
return 'ok'
