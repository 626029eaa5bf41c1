-- Several claims and ends of one node's trainers in one call, each on its own as
-- `claim_first`, `claim_task` or `end_task` makes it (each compare-and-set on its record), in
-- order. An op that fails answers its error alone; the others stand.
-- ARGV[1]: how many ops; then for each, its kind ('f' claim of the first task, 'c' claim of a
-- chosen one, 'e' end), how many keys and how many arguments it has; then every op's
-- arguments, in order; KEYS: every op's keys, in order. An op's keys and arguments are those
-- its function takes, events.lua's included (its keys end with the stream of every event and
-- the task's own events; its arguments with the event, its TTL and the stream's length).
-- The bundle's own events.lua keys and arguments come last: the stream of every event, an
-- unused task events key; no event, no TTL, the stream's length.
-- Answers each op's answer, in order.
local ops = tonumber(ARGV[1])
local key_at, arg_at = 1, 2 + 3 * ops
local out = {}
for i = 1, ops do
  local kind = ARGV[3 * i - 1]
  local nkeys, nargs = tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local K = {unpack(KEYS, key_at, key_at + nkeys - 1)}
  local A = {unpack(ARGV, arg_at, arg_at + nargs - 1)}
  key_at, arg_at = key_at + nkeys, arg_at + nargs
  local task_events = table.remove(K)
  table.remove(K)
  table.remove(A)
  local event_ttl = table.remove(A)
  local event = table.remove(A)
  local ok, answer
  if kind == 'c' then
    ok, answer = pcall(claim_task, K, A, task_events, event, event_ttl)
  elseif kind == 'f' then
    ok, answer = pcall(claim_first, K, A)
  else
    ok, answer = pcall(end_task, K, A, task_events, event, event_ttl)
  end
  if ok then
    out[i] = answer
  elseif type(answer) == 'table' and answer.err then
    out[i] = answer
  else
    out[i] = {err = tostring(answer)}
  end
end
return out
