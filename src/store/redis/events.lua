-- Prepended to every script that changes a task record, so the change and its event are one
-- atomic step. The caller appends two keys (the stream of every event, the task's own events)
-- and three arguments (the event as `Pending::encode` writes it, '' for none; the TTL in
-- seconds of the task's events once it ended, '' for none; the length the stream of every event
-- is kept to).
-- They are taken off here, so the script's own KEYS and ARGV read as if they were not there.
local EVENT_MAXLEN = table.remove(ARGV)
local EVENT_TTL = table.remove(ARGV)
local EVENT = table.remove(ARGV)
local TASK_EVENTS = table.remove(KEYS)
local ALL_EVENTS = table.remove(KEYS)

-- Logs the event: one id, from the stream of every event, also in the task's own events. Those
-- are a list of `ID EVENT` (a stream preallocates 4 KB per key); the terminal event is kept as
-- its id alone, its data read from the final record, which holds all of it.
local function emit()
  if EVENT == '' then
    return
  end
  local id = redis.call('XADD', ALL_EVENTS, 'MAXLEN', '~', EVENT_MAXLEN, '*', 'e', EVENT)
  if redis.call('TYPE', TASK_EVENTS).ok == 'stream' then
    -- Written by a version that kept a stream per task.
    redis.call('DEL', TASK_EVENTS)
  end
  if string.match(EVENT, '^%S+ (%d)') == '1' then
    redis.call('RPUSH', TASK_EVENTS, id)
  else
    redis.call('RPUSH', TASK_EVENTS, id .. ' ' .. EVENT)
    redis.call('LTRIM', TASK_EVENTS, -10000, -1)
  end
  if EVENT_TTL ~= '' then
    redis.call('EXPIRE', TASK_EVENTS, EVENT_TTL)
  end
end

