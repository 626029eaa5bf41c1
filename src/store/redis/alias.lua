-- Point an alias of a registered model at one of its versions, if it points where expected.
-- KEYS: the name's hash. ARGV: alias, version, expected ('' for anything, 'none' for unset,
-- else a version). Returns {'set', previous or ''}, {'moved', current or ''}, {'nomodel'} or
-- {'noversion'}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'nomodel'}
end
if redis.call('HEXISTS', KEYS[1], 'v:' .. ARGV[2]) == 0 then
  return {'noversion'}
end
local current = redis.call('HGET', KEYS[1], 'a:' .. ARGV[1])
if ARGV[3] ~= '' then
  local held = current or 'none'
  if held ~= ARGV[3] then
    return {'moved', current or ''}
  end
end
redis.call('HSET', KEYS[1], 'a:' .. ARGV[1], ARGV[2])
return {'set', current or ''}
