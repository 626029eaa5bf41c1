-- Register a model version: the name's next number, the version's record and its artifact.
-- KEYS: registry (names), the name's hash, the name's artifacts. ARGV: name, version json,
-- artifact bytes. Returns the version number.
local v = redis.call('HINCRBY', KEYS[2], 'next', 1)
redis.call('HSET', KEYS[2], 'v:' .. v, ARGV[2])
redis.call('HSET', KEYS[3], v, ARGV[3])
redis.call('SADD', KEYS[1], ARGV[1])
return v
