-- Prepended to scripts that look for the next task to claim.
-- The head of the queues `queues` (sorted sets; the lowest score runs next, and an earlier
-- queue wins a tie), with its record at `prefix` .. id. Returns false when every queue is empty,
-- else {queue index (1-based) in `queues`, id, record or false}.
local function head(queues, prefix)
  local best, best_score, best_queue
  for i, queue in ipairs(queues) do
    local first = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
    if first[1] and (best_score == nil or tonumber(first[2]) < best_score) then
      best, best_score, best_queue = first[1], tonumber(first[2]), i
    end
  end
  if best == nil then
    return false
  end
  return {best_queue, best, redis.call('GET', prefix .. best)}
end

