-- Prepended to the scripts that end a task (`end_task.lua`, `cached.lua`): `bury` leaves the
-- tombstone that tells an expired id from an unknown one. With a tail (a UUIDv7 id's last 8
-- bytes), it is appended to the expired ids of the id's minute (`Keys::expired_ids`), whose
-- key lives until the last of them has been expired long enough; without, the id gets a key
-- of its own.
local function bury(key, tail, ttl)
  if tail == '' then
    redis.call('SET', key, '1', 'EX', ttl)
    return
  end
  redis.call('APPEND', key, tail)
  if redis.call('TTL', key) < tonumber(ttl) then
    redis.call('EXPIRE', key, ttl)
  end
end
