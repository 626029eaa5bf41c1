-- Move a delayed task into its queue, if it is still delayed (a cancel may have taken it).
-- KEYS: delayed, queue, seq. ARGV: id, priority.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local seq = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[2], (9 - tonumber(ARGV[2])) * 1e12 + seq, ARGV[1])
return 1
