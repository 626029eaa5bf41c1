-- Take queued task ARGV[3] for a trainer, if it is still the next to run from the queues
-- KEYS[5..] (the ones the trainer takes from; KEYS[2] is the one it is in), its record is
-- unchanged, and the trainer's node ARGV[6] is not in the draining set KEYS[4].
-- (Takes an event, see events.lua.)
-- KEYS: task, queue, running, draining, then those queues. ARGV: old record, new record, id,
-- lease, task key prefix, node.
-- Returns {1 if taken, 0 if not, 2 if the node is draining; the next task to claim after that,
-- as `head` answers}: so the caller's next claim (or its retry) needs no peek of its own.
if redis.call('SISMEMBER', KEYS[4], ARGV[6]) == 1 then
  return {2, false}
end
local queues = {}
for i = 5, #KEYS do
  queues[#queues + 1] = KEYS[i]
end
local first = head(queues, ARGV[5])
if not first or first[2] ~= ARGV[3] or queues[first[1]] ~= KEYS[2]
    or first[3] ~= ARGV[1] then
  return {0, first}
end
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
emit()
return {1, head(queues, ARGV[5])}
