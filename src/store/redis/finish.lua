-- End a task (see end_task.lua; takes an event, see events.lua; buries, see tombstone.lua).
return end_task(KEYS, ARGV, TASK_EVENTS, EVENT, EVENT_TTL)
