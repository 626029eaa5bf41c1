-- Claim a queued task for a trainer (see claim_task.lua; takes an event, see events.lua).
return claim_task(KEYS, ARGV, TASK_EVENTS, EVENT, EVENT_TTL)
