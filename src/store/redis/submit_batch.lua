-- Store many new tasks and queue them, all or nothing: nothing is stored if an item's
-- idempotency key holds a different request, or if the queue would pass its limit. An item
-- whose key holds the same request is answered with that task and not stored again.
-- (Takes an event preamble, see events.lua, with no event of its own.)
-- KEYS: seq, index, queue of class 1 (any), 2 (cpu), 3 (gpu), then per item: task, its
-- events, its idempotency key.
-- ARGV: queue limit, item count, then per item: record, priority, submitted_at, id, class
-- (1 to 3), idempotency value ('' for no key), idempotency ttl in seconds, fingerprint,
-- event.
-- Answers {'ok' | 'reused' | 'full', then per item '' (stored, or to be) or what its key
-- holds ('ID FINGERPRINT')}.
local n = tonumber(ARGV[2])
local answers = {'ok'}
local new = 0
for i = 1, n do
  local k, a = 5 + (i - 1) * 3, 2 + (i - 1) * 9
  local held = ''
  if ARGV[a + 6] ~= '' then
    held = redis.call('GET', KEYS[k + 3]) or ''
    if held ~= '' then
      local space = string.find(held, ' ', 1, true)
      local fingerprint = space and string.sub(held, space + 1) or ''
      if fingerprint ~= ARGV[a + 8] then
        answers[1] = 'reused'
      end
    end
  end
  if held == '' then
    new = new + 1
  end
  answers[i + 1] = held
end
if answers[1] ~= 'ok' then
  return answers
end
if new == 0 then
  return answers
end
local depth = 0
for q = 3, 5 do
  depth = depth + redis.call('ZCARD', KEYS[q])
end
if depth + new > tonumber(ARGV[1]) then
  return {'full'}
end
local seq = redis.call('INCRBY', KEYS[1], new) - new
for i = 1, n do
  if answers[i + 1] == '' then
    local k, a = 5 + (i - 1) * 3, 2 + (i - 1) * 9
    local id = ARGV[a + 4]
    seq = seq + 1
    redis.call('SET', KEYS[k + 1], ARGV[a + 1])
    redis.call('ZADD', KEYS[2 + tonumber(ARGV[a + 5])], (9 - tonumber(ARGV[a + 2])) * 1e12 + seq, id)
    redis.call('ZADD', KEYS[2], ARGV[a + 3], id)
    if ARGV[a + 6] ~= '' then
      redis.call('SET', KEYS[k + 3], ARGV[a + 6], 'EX', ARGV[a + 7])
    end
    if ARGV[a + 9] ~= '' then
      log_event(KEYS[k + 2], ARGV[a + 9], '')
    end
  end
end
return answers
