-- Store a task that is SUCCESS at once (a copy of a cached result): the record and its model
-- expire as a finish's do, its tombstone outlives them, it is listed, its callback queued.
-- (Takes an event, see events.lua; buries, see tombstone.lua.) KEYS: task, model, tombstone
-- (as end_task.lua's), index, callbacks. ARGV: record as stored, model as stored, ttl seconds,
-- tombstone ttl seconds, submitted_at, id, callback due time ('' for none), the id's tail
-- ('' for a tombstone key of its own).
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
bury(KEYS[3], ARGV[8], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])
if ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[5], ARGV[7], ARGV[6])
end
emit()
return 1
