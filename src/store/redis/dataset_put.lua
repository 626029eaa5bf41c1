-- Store an uploaded data set, unless the data sets kept would then take more than the limit.
-- KEYS: datasets (info), dataset_bytes, dataset_expiry, the set's csv key.
-- ARGV: id, info json, csv, bytes, limit (0: none), expires at ('' for never).
-- Returns {1, total after} or {0, total before}.
local total = 0
for _, b in ipairs(redis.call('HVALS', KEYS[2])) do
  total = total + tonumber(b)
end
local bytes = tonumber(ARGV[4])
local limit = tonumber(ARGV[5])
if limit > 0 and total + bytes > limit then
  return {0, total}
end
redis.call('SET', KEYS[4], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], bytes)
if ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
end
return {1, total + bytes}
