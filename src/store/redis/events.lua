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

-- Logs `event` of the task whose own events are at `task_events`: one id, from the stream of
-- every event, also in the task's own events. Those are a list of `ID EVENT` (a stream
-- preallocates 4 KB per key); the terminal event is kept as its id alone, its data read from
-- the final record, which holds all of it.
local function log_event(task_events, event, ttl)
  local id = redis.call('XADD', ALL_EVENTS, 'MAXLEN', '~', EVENT_MAXLEN, '*', 'e', event)
  local entry = id .. ' ' .. event
  if string.match(event, '^%S+ (%d)') == '1' then
    entry = id
  end
  local length = redis.pcall('RPUSH', task_events, entry)
  if type(length) == 'table' and length.err then
    -- A stream, written by a version that kept one per task: replaced by the list.
    redis.call('DEL', task_events)
    length = redis.call('RPUSH', task_events, entry)
  end
  -- Kept to its last 10,000 (RPUSH answers the length: no LTRIM until it is reached).
  if length > 10000 then
    redis.call('LTRIM', task_events, -10000, -1)
  end
  if ttl ~= '' then
    redis.call('EXPIRE', task_events, ttl)
  end
end

-- Logs the script's own event (none if it is '').
local function emit()
  if EVENT == '' then
    return
  end
  log_event(TASK_EVENTS, EVENT, EVENT_TTL)
end
