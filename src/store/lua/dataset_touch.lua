-- A use of a data set: its info, unless it is gone or expired, and its expiry renewed.
-- KEYS: datasets (info), dataset_expiry. ARGV: id, now, new expiry ('' to keep it).
-- Returns {info json, expires at or ''} or false.
local info = redis.call('HGET', KEYS[1], ARGV[1])
if not info then
  return false
end
local at = redis.call('ZSCORE', KEYS[2], ARGV[1])
if at and tonumber(at) <= tonumber(ARGV[2]) then
  return false
end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  at = ARGV[3]
end
return {info, at or ''}
