-- A use of a data set: its info, unless it is gone, and its expiry renewed.
-- KEYS: datasets (info), dataset_expiry. ARGV: id, new expiry ('' to keep it).
-- Returns {info json, expires at or ''} or false.
local info = redis.call('HGET', KEYS[1], ARGV[1])
if not info then
  return false
end
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  return {info, ARGV[2]}
end
local at = redis.call('ZSCORE', KEYS[2], ARGV[1])
return {info, at or ''}
