-- Prepended to scripts that look for the next tasks to claim.
-- The first `k` tasks of the queues `queues` (sorted sets; the lowest score runs next, an
-- earlier queue wins a tie, then the queue's own order), in the order they should run: each
-- {score, queue index (1-based) in `queues`, rank in its queue, id}.
local function ranked(queues, k)
  local entries = {}
  for i, queue in ipairs(queues) do
    local first = redis.call('ZRANGE', queue, 0, k - 1, 'WITHSCORES')
    for j = 1, #first, 2 do
      entries[#entries + 1] = {tonumber(first[j + 1]), i, j, first[j]}
    end
  end
  table.sort(entries, function(a, b)
    if a[1] ~= b[1] then
      return a[1] < b[1]
    elseif a[2] ~= b[2] then
      return a[2] < b[2]
    end
    return a[3] < b[3]
  end)
  while #entries > k do
    table.remove(entries)
  end
  return entries
end

-- The first `k` of `entries` (as `ranked` answers), each with its record at `prefix` .. id:
-- {queue index, id, record or false}.
local function with_records(entries, prefix, k)
  local out = {}
  for n = 1, math.min(k, #entries) do
    local e = entries[n]
    out[n] = {e[2], e[4], redis.call('GET', prefix .. e[4])}
  end
  return out
end

-- The first `k` tasks to claim from `queues`, in order, as `with_records` answers. Empty when
-- every queue is.
local function heads(queues, prefix, k)
  return with_records(ranked(queues, k), prefix, k)
end
