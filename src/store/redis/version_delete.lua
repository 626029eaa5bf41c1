-- Delete a version of a registered model and its artifact, unless an alias points at it.
-- KEYS: the name's hash, the name's artifacts. ARGV: version. Returns {'deleted'},
-- {'aliased', alias...}, {'nomodel'} or {'noversion'}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'nomodel'}
end
if redis.call('HEXISTS', KEYS[1], 'v:' .. ARGV[1]) == 0 then
  return {'noversion'}
end
local fields = redis.call('HGETALL', KEYS[1])
local aliased = {'aliased'}
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 2) == 'a:' and fields[i + 1] == ARGV[1] then
    table.insert(aliased, string.sub(fields[i], 3))
  end
end
if #aliased > 1 then
  return aliased
end
redis.call('HDEL', KEYS[1], 'v:' .. ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return {'deleted'}
