-- Replace a task record if it is unchanged since it was read (compare and set).
-- (Takes an event, see events.lua.) KEYS: task. ARGV: old record, new record.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
emit()
return 1
