-- Prepended to `bundle.lua`, which ends running tasks through it: `end_task`
-- ends one task if its record is unchanged since read, and answers 1, else 0.
-- The final record and its model expire after A[4] seconds; its tombstone outlives them by
-- the expired-memory window; a task with a callback is queued for delivery.
-- K: task, running, model, tombstone (the expired ids of the id's minute, or a key of its
-- own), queue, delayed, callbacks. A: old, new, model bytes ('' for none), ttl seconds,
-- tombstone ttl seconds, id, callback due time ('' for none), the id's tail to append to the
-- expired ids ('' for a tombstone key of its own), '1' if the task was pending (in its queue
-- or waiting for a retry; a running one is in neither). Then its event, as `log_event` takes
-- it: the task's own events key, the event ('' for none), its TTL.
local function end_task(K, A, task_events, event, event_ttl)
  if redis.call('GET', K[1]) ~= A[1] then
    return 0
  end
  redis.call('SET', K[1], A[2], 'EX', A[4])
  if A[9] == '1' then
    redis.call('ZREM', K[5], A[6])
    redis.call('ZREM', K[6], A[6])
  else
    redis.call('HDEL', K[2], A[6])
  end
  if A[3] ~= '' then
    redis.call('SET', K[3], A[3], 'EX', A[4])
  end
  bury(K[4], A[8], A[5])
  if A[7] ~= '' then
    redis.call('ZADD', K[7], A[7], A[6])
  end
  if event ~= '' then
    log_event(task_events, event, event_ttl)
  end
  return 1
end
