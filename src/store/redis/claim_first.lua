-- Prepended to `bundle.lua`: `claim_first` claims for a trainer the first task of its queues,
-- whichever it is, the claimed record made here from the queued one (`claimed`), so that no
-- claim chooses a task another may take first: claims of many nodes at once take the first
-- tasks one each, with nothing to retry.
-- K: running, draining, then the queues the trainer takes from. A: the trainer as JSON, the
-- trainer, its node, now (JSON), the lease's end (JSON), the trainer's node as an event names
-- it (JSON), the task key prefix, the task events key prefix; then, for a claim of some work
-- only, that work's spec and data set as a record writes them ('' for any work).
-- Answers {1, record} for the task claimed, {0} if the queues are empty, {2} if the trainer's
-- node is draining, {3} if the first task is one to look at closer (a record this script
-- cannot change, or work that may differ only where the caller's comparison allows): the
-- caller then claims it as `claim_task` does.

-- The claimed record and its event from queued record `old` (see `claim_first` for A), or
-- nil if this script cannot make it.
local function claimed(old, A)
  local keys, values, at = members(old)
  if not keys then
    return nil
  end
  local function raw(key)
    local n = at[key]
    return n and values[n]
  end
  local attempt = tonumber(raw('"attempt"') or '')
  if raw('"state"') ~= '"PENDING"' or not attempt or not raw('"trainer"')
    or not raw('"started_at"') or not raw('"progress"') or not raw('"id"') then
    return nil
  end
  if A[9] and A[9] ~= '' and (raw('"spec"') ~= A[9] or raw('"dataset_id"') ~= A[10]) then
    return nil
  end
  local spec_keys, spec_values, spec_at = members(raw('"spec"') or '')
  if not spec_keys or not spec_at['"dataset"'] then
    return nil
  end
  attempt = attempt + 1
  values[at['"state"']] = '"STARTED"'
  values[at['"attempt"']] = tostring(attempt)
  values[at['"trainer"']] = A[1]
  values[at['"started_at"']] = A[4]
  values[at['"progress"']] = 'null'
  local out = {}
  for n, key in ipairs(keys) do
    if key ~= '"retry_at"' and key ~= '"resumed_from"' and key ~= '"lease_until"' then
      out[#out + 1] = key .. ':' .. values[n]
    end
  end
  out[#out + 1] = '"lease_until":' .. A[5]
  local record = '{' .. table.concat(out, ',') .. '}'
  -- As `Pending::of` writes a claim's event: a state event of the new attempt.
  local data = '{"task_id":' .. raw('"id"') .. ',"state":"STARTED","model_type":'
    .. raw('"model_type"') .. ',"dataset":' .. spec_values[spec_at['"dataset"']]
    .. ',"priority":' .. raw('"priority"') .. ',"submitted_at":' .. raw('"submitted_at"')
    .. ',"attempt":' .. attempt .. ',"node":' .. A[6] .. ',"trainer":' .. A[1]
    .. ',"progress":null,"result":null,"error":' .. (raw('"error"') or 'null')
    .. ',"at":' .. A[4] .. '}'
  return record, attempt, data
end

local function claim_first(K, A)
  if redis.call('SISMEMBER', K[2], A[3]) == 1 then
    return {2}
  end
  local queues = {}
  for i = 3, #K do
    queues[#queues + 1] = K[i]
  end
  -- Queued ids without a record are dropped on the way (they cannot run, and would block the
  -- queue); a few at most in one call.
  for _ = 1, 16 do
    local first = ranked(queues, 1)[1]
    if not first then
      return {0}
    end
    local queue, id = queues[first[2]], first[4]
    local old = redis.call('GET', A[7] .. id)
    if not old then
      redis.call('ZREM', queue, id)
    else
      local record, attempt, data = claimed(old, A)
      if not record then
        return {3}
      end
      redis.call('ZREM', queue, id)
      redis.call('SET', A[7] .. id, record)
      redis.call('HSET', K[1], id, A[2] .. '\t' .. attempt)
      log_event(A[8] .. id, 'state 0 ' .. id .. ' ' .. data, '')
      return {1, record}
    end
  end
  return {3}
end
