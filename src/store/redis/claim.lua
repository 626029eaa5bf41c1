-- Take queued task ARGV[3] for a trainer, if it is still among the first ARGV[7] tasks to run
-- from the queues KEYS[5..] (the ones the trainer takes from; KEYS[2] is the one it is in),
-- its record is unchanged, and the trainer's node ARGV[6] is not in the draining set KEYS[4].
-- ARGV[7] is how many claims its node has under way: each of them takes a different one of
-- the first tasks, so the tasks claimed at once are the first ones, and one claim alone takes
-- the very first.
-- (Takes an event, see events.lua.)
-- KEYS: task, queue, running, draining, then those queues. ARGV: old record, new record, id,
-- lease, task key prefix, node, claims under way, how many tasks to answer.
-- Returns {1 if taken, 0 if not, 2 if the node is draining; the first ARGV[8] tasks to claim
-- after that, as `heads` answers}: so the caller's next claims (or its retry) need no peek of
-- their own.
if redis.call('SISMEMBER', KEYS[4], ARGV[6]) == 1 then
  return {2, {}}
end
local queues = {}
for i = 5, #KEYS do
  queues[#queues + 1] = KEYS[i]
end
local answered = tonumber(ARGV[8])
-- One ranking serves the check and the answer: after the claim, the first tasks are those
-- before it but the one taken (which is among the first ARGV[7], never more than ARGV[8]).
local first = ranked(queues, answered + 1)
local at = nil
for n = 1, math.min(tonumber(ARGV[7]), #first) do
  if first[n][4] == ARGV[3] then
    if queues[first[n][2]] == KEYS[2] then
      at = n
    end
    break
  end
end
if not at or redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0, with_records(first, ARGV[5], answered)}
end
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
emit()
table.remove(first, at)
return {1, with_records(first, ARGV[5], answered)}
