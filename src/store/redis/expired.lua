-- Whether an id is among the expired ids of its minute (`Keys::expired_ids`): a string of
-- 8-byte id tails, one after the other. KEYS: the expired ids. ARGV: the id's tail.
-- Returns 1 if it is there.
local ids = redis.call('GET', KEYS[1])
if not ids then
  return 0
end
local from = 1
while true do
  local at = string.find(ids, ARGV[1], from, true)
  if not at then
    return 0
  end
  if (at - 1) % 8 == 0 then
    return 1
  end
  from = at + 1
end
