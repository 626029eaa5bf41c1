-- The first ARGV[2] tasks to claim from the queues KEYS, as `heads` answers (ARGV[1]: the task
-- key prefix). Reads only.
return heads(KEYS, ARGV[1], tonumber(ARGV[2]))
