-- Remove a data set; with ARGV[2], only if it expired by then (a use since renewed it).
-- KEYS: datasets (info), dataset_bytes, dataset_expiry, the set's csv key.
-- ARGV: id, expired by ('' for any). Returns 1 if it was removed.
if ARGV[2] ~= '' then
  local at = redis.call('ZSCORE', KEYS[3], ARGV[1])
  if not at or tonumber(at) > tonumber(ARGV[2]) then
    return 0
  end
end
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
return removed
