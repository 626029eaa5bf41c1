-- Take the leader lease for node ARGV[1] if nobody holds it, or renew it if ARGV[1] holds it.
-- KEYS: leader. ARGV: node name, ttl in milliseconds. Returns 1 if ARGV[1] leads now.
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
