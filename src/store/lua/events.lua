-- Prepended to every script that changes a task record, so the change and its event are one
-- atomic step. The caller appends two keys (the stream of every event, the task's own stream)
-- and three arguments (the event as `Pending::encode` writes it, '' for none; the TTL in
-- seconds of the task's stream, '' for none; the length the stream of every event is kept to).
-- They are taken off here, so the script's own KEYS and ARGV read as if they were not there.
local EVENT_MAXLEN = table.remove(ARGV)
local EVENT_TTL = table.remove(ARGV)
local EVENT = table.remove(ARGV)
local TASK_EVENTS = table.remove(KEYS)
local ALL_EVENTS = table.remove(KEYS)

-- Logs the event: one id, from the stream of every event, in both streams.
local function emit()
  if EVENT == '' then
    return
  end
  local id = redis.call('XADD', ALL_EVENTS, 'MAXLEN', '~', EVENT_MAXLEN, '*', 'e', EVENT)
  redis.call('XADD', TASK_EVENTS, 'MAXLEN', '~', 10000, id, 'e', EVENT)
  if EVENT_TTL ~= '' then
    redis.call('EXPIRE', TASK_EVENTS, EVENT_TTL)
  end
end

