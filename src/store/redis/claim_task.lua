-- Prepended to `bundle.lua`, which claims through it: `claim_task` takes queued
-- task A[3] for a trainer, if it is still among the first A[7] tasks to run from the queues
-- K[5..] (the ones the trainer takes from; K[2] is the one it is in), its record is
-- unchanged, and the trainer's node A[6] is not in the draining set K[4].
-- A[7] is how many claims its node has under way: each of them takes a different one of
-- the first tasks, so the tasks claimed at once are the first ones, and one claim alone takes
-- the very first.
-- K: task, queue, running, draining, then those queues. A: old record, new record, id,
-- lease, task key prefix, node, claims under way, how many tasks to answer. Then its event,
-- as `log_event` takes it: the task's own events key, the event ('' for none), its TTL.
-- Answers {1 if taken, 0 if not, 2 if the node is draining; the first A[8] tasks to claim
-- after that, as `heads` answers}: so the caller's next claims (or its retry) need no peek of
-- their own.
local function claim_task(K, A, task_events, event, event_ttl)
  if redis.call('SISMEMBER', K[4], A[6]) == 1 then
    return {2, {}}
  end
  local queues = {}
  for i = 5, #K do
    queues[#queues + 1] = K[i]
  end
  local answered = tonumber(A[8])
  -- One ranking serves the check and the answer: after the claim, the first tasks are those
  -- before it but the one taken (which is among the first A[7], never more than A[8]).
  local first = ranked(queues, answered + 1)
  local at = nil
  for n = 1, math.min(tonumber(A[7]), #first) do
    if first[n][4] == A[3] then
      if queues[first[n][2]] == K[2] then
        at = n
      end
      break
    end
  end
  if not at or redis.call('GET', K[1]) ~= A[1] then
    return {0, with_records(first, A[5], answered)}
  end
  redis.call('ZREM', K[2], A[3])
  redis.call('SET', K[1], A[2])
  redis.call('HSET', K[3], A[3], A[4])
  if event ~= '' then
    log_event(task_events, event, event_ttl)
  end
  table.remove(first, at)
  return {1, with_records(first, A[5], answered)}
end
