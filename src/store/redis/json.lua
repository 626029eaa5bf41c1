-- Prepended to scripts that read a record's fields: `members` splits a JSON object as
-- serde_json writes it (no white space) into its members, without decoding any value, so that
-- a script can change a few and join the rest back byte for byte (Redis's cjson would write
-- numbers back with 14 digits).

-- Where the string that opens at `i` closes (the index of its closing quote), or nil.
local function string_end(s, i)
  local j = i + 1
  while true do
    local q = string.find(s, '["\\]', j)
    if not q then
      return nil
    elseif string.sub(s, q, q) == '"' then
      return q
    end
    j = q + 2
  end
end

-- Where the value that starts at `i` ends (the index of its last character), or nil.
local function value_end(s, i)
  local c = string.sub(s, i, i)
  if c == '"' then
    return string_end(s, i)
  elseif c == '{' or c == '[' then
    local depth, j = 0, i
    while true do
      local k = string.find(s, '["{}%[%]]', j)
      if not k then
        return nil
      end
      local d = string.sub(s, k, k)
      if d == '"' then
        local e = string_end(s, k)
        if not e then
          return nil
        end
        j = e + 1
      else
        depth = depth + ((d == '{' or d == '[') and 1 or -1)
        if depth == 0 then
          return k
        end
        j = k + 1
      end
    end
  end
  local k = string.find(s, '[,}%]]', i)
  return k and k > i and k - 1 or nil
end

-- The members of JSON object `s`: its keys (quoted, as written) and their values (as
-- written), in order, and each key's index; nil if `s` is not an object.
local function members(s)
  local keys, values, at = {}, {}, {}
  if string.sub(s, 1, 1) ~= '{' then
    return nil
  elseif s == '{}' then
    return keys, values, at
  end
  local i = 2
  while true do
    if string.sub(s, i, i) ~= '"' then
      return nil
    end
    local key_end = string_end(s, i)
    if not key_end or string.sub(s, key_end + 1, key_end + 1) ~= ':' then
      return nil
    end
    local v = key_end + 2
    local v_end = value_end(s, v)
    if not v_end then
      return nil
    end
    local key = string.sub(s, i, key_end)
    keys[#keys + 1] = key
    values[#values + 1] = string.sub(s, v, v_end)
    at[key] = #keys
    local after = string.sub(s, v_end + 1, v_end + 1)
    if after == '}' then
      if v_end + 1 ~= #s then
        return nil
      end
      return keys, values, at
    elseif after ~= ',' then
      return nil
    end
    i = v_end + 2
  end
end
