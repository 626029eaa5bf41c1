-- Every task in the running hash KEYS[1] with its record (at task key prefix ARGV[1]), read at
-- one instant: a trainer that claims its next task and then ends its last one is never seen
-- without a lease. Reads only. Returns {id, record or false, id, record or false, ...}.
local out = {}
for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('GET', ARGV[1] .. id)
end
return out
