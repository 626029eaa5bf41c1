-- The next task to claim from the queues KEYS, as `head` answers (ARGV[1]: the task key prefix).
-- Reads only.
return head(KEYS, ARGV[1])
