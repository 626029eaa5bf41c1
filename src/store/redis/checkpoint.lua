-- Keep a running training's checkpoint, if the attempt that saved it still runs the task:
-- the running hash holds `trainer<TAB>attempt` for each running task (claim_task.lua sets it,
-- end_task.lua and requeue.lua remove it), so the fence needs no decoding of the record.
-- KEYS: running, checkpoint. ARGV: id, attempt, step, data, ttl (seconds).
-- Returns 1 if kept, 0 if the attempt no longer runs the task.
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held or string.match(held, '\t(%d+)$') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[2], 'attempt', ARGV[2], 'step', ARGV[3], 'data', ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
