-- The next task to claim from the queues KEYS (sorted sets; the lowest score runs next, and an
-- earlier queue wins a tie) with its record at ARGV[1] .. id. Reads only.
-- Returns nil when every queue is empty, else {queue index (1-based), id, record or false}.
local best, best_score, best_queue
for i, queue in ipairs(KEYS) do
  local head = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
  if head[1] and (best_score == nil or tonumber(head[2]) < best_score) then
    best, best_score, best_queue = head[1], tonumber(head[2]), i
  end
end
if best == nil then
  return nil
end
return {best_queue, best, redis.call('GET', ARGV[1] .. best)}
