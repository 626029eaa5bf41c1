-- End a task: the final record and its model expire after ARGV[4] seconds; its tombstone
-- outlives them by the expired-memory window; a task with a callback is queued for delivery.
-- Only if the record is unchanged since read.
-- (Takes an event, see events.lua; buries, see tombstone.lua.) KEYS: task, running, model, tombstone (the expired ids of
-- the id's minute, or a key of its own), queue, delayed, callbacks. ARGV: old, new, model bytes
-- ('' for none), ttl seconds, tombstone ttl seconds, id, callback due time ('' for none), the
-- id's tail to append to the expired ids ('' for a tombstone key of its own).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[4])
redis.call('HDEL', KEYS[2], ARGV[6])
redis.call('ZREM', KEYS[5], ARGV[6])
redis.call('ZREM', KEYS[6], ARGV[6])
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
end
bury(KEYS[4], ARGV[8], ARGV[5])
if ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[7], ARGV[7], ARGV[6])
end
emit()
return 1
