"""The event log's append scripts (Lua): one event, or a whole tick of events.

Both share one function, so a single append and a batched one apply exactly
the same rules: take the next sequence number, push the entry, append delta
text, record tool calls, update the record, set TTLs, publish. Each refuses
to write after a terminal event and answers a resend (same writer id and
number) with the sequence number it got the first time.

The batched script exists for cost: per call, Redis spends more on starting
a script than on the handful of commands inside it, and the worker appends
thousands of events a second. It also publishes once per channel per call,
the channel's new entries joined by newlines (entries are single-line JSON),
so the web's hub handles one message per generation per tick.
"""

from __future__ import annotations

# The shared function's K and A (APPEND_ONE_LUA's KEYS and ARGV):
# K: 1 record, 2 log, 3 text, 4 tool calls, 5 tombstone, 6 channel
# A: 1 event, 2 data, 3 text, 4 terminal flag, 5 live ttl, 6 final ttl,
#    7 tombstone ttl, 8 publish command, 9 writer id, 10 writer's number for
#    this append (9 and 10 empty: no deduplication), 11.. record field/value pairs
# Returns seq (or -1 record missing, -2 after the terminal event, -3 an
# earlier append of this writer has not landed yet) and the entry to publish
# (nil when nothing was appended).
_APPEND_FUNCTION = """
local function append(K, A)
  -- Few commands per event: one HMGET reads everything the checks need,
  -- one HSET writes every record field.
  local r = redis.call('HMGET', K[1], 'last_seq', 'ended', 'w_id', 'w_n', 'w_seq')
  local last = r[1]
  if not last then
    if redis.call('EXISTS', K[1]) == 0 then return -1 end
    last = 0
  end
  if A[9] ~= '' and r[3] == A[9] and tonumber(r[4]) >= tonumber(A[10]) then
    return tonumber(r[5])
  end
  if r[2] then return -2 end
  -- A writer's appends land in its own order or not at all: after one was
  -- refused (OOM, READONLY...), a later one that reaches Redis first is
  -- answered -3 and resent with it, so a log never has a hole.
  if A[9] ~= '' then
    local expected = 1
    if r[3] == A[9] then expected = tonumber(r[4]) + 1 end
    if tonumber(A[10]) > expected then return -3 end
  end
  local seq = tonumber(last) + 1
  local entry = seq .. ' ' .. A[1] .. ' ' .. A[2]
  if redis.call('RPUSH', K[2], entry) == 1 then redis.call('EXPIRE', K[2], A[5]) end
  if A[3] ~= '' then
    if redis.call('APPEND', K[3], A[3]) == string.len(A[3]) then
      redis.call('EXPIRE', K[3], A[5])
    end
  end
  if A[1] == 'tool_call' then
    if redis.call('RPUSH', K[4], A[2]) == 1 then redis.call('EXPIRE', K[4], A[5]) end
  end
  local fields = {'last_seq', seq}
  if A[9] ~= '' then
    fields[3] = 'w_id'; fields[4] = A[9]; fields[5] = 'w_n'; fields[6] = A[10]
    fields[7] = 'w_seq'; fields[8] = seq
  end
  for i = 11, #A do fields[#fields + 1] = A[i] end
  if A[4] == '1' then
    fields[#fields + 1] = 'ended'; fields[#fields + 1] = seq
  end
  redis.call('HSET', K[1], unpack(fields))
  if A[4] == '1' then
    for i = 1, 4 do redis.call('EXPIRE', K[i], A[6]) end
    redis.call('EXPIRE', K[5], A[7])
  end
  return seq, entry
end
"""

APPEND_ONE_LUA = _APPEND_FUNCTION + """
local seq, entry = append(KEYS, ARGV)
if entry then redis.call(ARGV[8], KEYS[6], entry) end
return seq
"""

# The batched script's own, compact wire format (the bytes per event are
# most of what the worker sends Redis): no KEYS; ARGV starts with what is the
# same for every event of a call, then each event in a few arguments.
# ARGV: 1 live ttl, 2 final ttl, 3 tombstone ttl, 4 publish command,
#   5..16 the six generation keys as (prefix, suffix) pairs, built by
#   spool/keys.py: key i of generation G is prefix_i .. G .. suffix_i, in K's
#   order; then per event: its argument count, then generation id, writer id,
#   writer's number, event, data, text, terminal flag, record field/value
#   pairs. Delta and tool_call events set the record's `output` field here.
# Keys are not declared, so this script is for a single Redis only: the
# Cluster path sends APPEND_ONE_LUA per event, with its KEYS.
# Returns the seqs, in order.
CONSTANTS_PER_CALL = 16  # ARGV before the first event
APPEND_MANY_LUA = _APPEND_FUNCTION + """
local seqs, pending, channels, gens = {}, {}, {}, {}
local command = ARGV[4]
local a = 17
local i = 0
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local gen = ARGV[a + 1]
  local keys = gens[gen]
  if not keys then
    keys = {}
    for k = 1, 6 do keys[k] = ARGV[3 + 2 * k] .. gen .. ARGV[4 + 2 * k] end
    gens[gen] = keys
  end
  local event = ARGV[a + 4]
  local args = {event, ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[1], ARGV[2],
                ARGV[3], command, ARGV[a + 2], ARGV[a + 3]}
  for j = a + 8, a + n do args[#args + 1] = ARGV[j] end
  if event == 'delta' or event == 'tool_call' then
    args[#args + 1] = 'output'; args[#args + 1] = '1'
  end
  local seq, entry = append(keys, args)
  i = i + 1
  seqs[i] = seq
  if entry then
    local channel = keys[6]
    local list = pending[channel]
    if not list then
      list = {}
      pending[channel] = list
      channels[#channels + 1] = channel
    end
    list[#list + 1] = entry
  end
  a = a + n + 1
end
for _, channel in ipairs(channels) do
  redis.call(command, channel, table.concat(pending[channel], '\\n'))
end
return seqs
"""
