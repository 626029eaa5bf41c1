-- Take up to ARGV[2] callbacks due by ARGV[1], holding each until ARGV[3] so one deliverer at a
-- time tries it. KEYS: callbacks. Returns the ids taken.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[3], id)
end
return due
