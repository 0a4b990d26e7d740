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

# The shared functions' K and A (APPEND_ONE_LUA's KEYS and ARGV):
# K: 1 record, 2 log, 3 text, 4 tool calls, 5 tombstone, 6 channel
# A: 1 event, 2 data, 3 text, 4 terminal flag, 5 live ttl, 6 final ttl,
#    7 tombstone ttl, 8 publish command, 9 writer id, 10 writer's number for
#    this append (9 and 10 empty: no deduplication), 11.. record field/value pairs
# `add` returns seq (or -1 record missing, -2 after the terminal event, -3 an
# earlier append of this writer has not landed yet) and the entry to publish
# (nil when nothing was appended).
#
# A generation's appends of one call are checked one by one against state
# read once (`open`) and written together (`flush`): one RPUSH of all its
# entries, one APPEND of all its text, one HSET of the record's last values.
# A script runs alone, so the keys end exactly as one append at a time would
# leave them; a tick's events cost a few commands per generation, not four
# per event.
_APPEND_FUNCTION = """
local function open(K)
  local r = redis.call('HMGET', K[1], 'last_seq', 'ended', 'w_id', 'w_n', 'w_seq')
  local s = {K = K, last = tonumber(r[1]), ended = r[2], w_id = r[3],
             w_n = tonumber(r[4]), w_seq = tonumber(r[5]),
             entries = {}, text = {}, tools = {}, names = {}, values = {}}
  if not s.last then
    if redis.call('EXISTS', K[1]) == 0 then s.missing = true end
    s.last = 0
  end
  return s
end

local function set(s, name, value)
  if s.values[name] == nil then s.names[#s.names + 1] = name end
  s.values[name] = value
end

local function add(s, A)
  if s.missing then return -1 end
  if A[9] ~= '' and s.w_id == A[9] and s.w_n >= tonumber(A[10]) then
    return s.w_seq
  end
  if s.ended then return -2 end
  -- A writer's appends land in its own order or not at all: after one was
  -- refused (OOM, READONLY...), a later one that reaches Redis first is
  -- answered -3 and resent with it, so a log never has a hole.
  if A[9] ~= '' then
    local expected = 1
    if s.w_id == A[9] then expected = s.w_n + 1 end
    if tonumber(A[10]) > expected then return -3 end
  end
  local seq = s.last + 1
  local entry = seq .. ' ' .. A[1] .. ' ' .. A[2]
  s.last = seq
  s.live = A[5]
  s.entries[#s.entries + 1] = entry
  if A[3] ~= '' then s.text[#s.text + 1] = A[3] end
  if A[1] == 'tool_call' then s.tools[#s.tools + 1] = A[2] end
  set(s, 'last_seq', seq)
  if A[9] ~= '' then
    s.w_id, s.w_n, s.w_seq = A[9], tonumber(A[10]), seq
    set(s, 'w_id', A[9]); set(s, 'w_n', A[10]); set(s, 'w_seq', seq)
  end
  for i = 11, #A - 1, 2 do set(s, A[i], A[i + 1]) end
  if A[4] == '1' then
    s.ended = seq
    set(s, 'ended', seq)
    s.final, s.tomb = A[6], A[7]
  end
  return seq, entry
end

local function push(key, values, ttl)
  -- The key's TTL is set by the push that created it.
  if redis.call('RPUSH', key, unpack(values)) == #values then
    redis.call('EXPIRE', key, ttl)
  end
end

local function flush(s)
  if #s.entries == 0 then return end
  local K = s.K
  push(K[2], s.entries, s.live)
  if #s.text > 0 then
    local text = table.concat(s.text)
    if redis.call('APPEND', K[3], text) == string.len(text) then
      redis.call('EXPIRE', K[3], s.live)
    end
  end
  if #s.tools > 0 then push(K[4], s.tools, s.live) end
  local fields = {}
  for _, name in ipairs(s.names) do
    fields[#fields + 1] = name; fields[#fields + 1] = s.values[name]
  end
  redis.call('HSET', K[1], unpack(fields))
  if s.final then
    for i = 1, 4 do redis.call('EXPIRE', K[i], s.final) end
    redis.call('EXPIRE', K[5], s.tomb)
  end
end

-- One event on its own (the Cluster path, the start script).
local function append(K, A)
  local s = open(K)
  local seq, entry = add(s, A)
  flush(s)
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
local seqs, pending, channels, states, opened = {}, {}, {}, {}, {}
local command = ARGV[4]
local a = 17
local i = 0
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local gen = ARGV[a + 1]
  local s = states[gen]
  if not s then
    local keys = {}
    for k = 1, 6 do keys[k] = ARGV[3 + 2 * k] .. gen .. ARGV[4 + 2 * k] end
    s = open(keys)
    states[gen] = s
    opened[#opened + 1] = s
  end
  local event = ARGV[a + 4]
  local args = {event, ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[1], ARGV[2],
                ARGV[3], command, ARGV[a + 2], ARGV[a + 3]}
  for j = a + 8, a + n do args[#args + 1] = ARGV[j] end
  if event == 'delta' or event == 'tool_call' then
    args[#args + 1] = 'output'; args[#args + 1] = '1'
  end
  local seq, entry = add(s, args)
  i = i + 1
  seqs[i] = seq
  if entry then
    local channel = s.K[6]
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
for _, s in ipairs(opened) do flush(s) end
for _, channel in ipairs(channels) do
  redis.call(command, channel, table.concat(pending[channel], '\\n'))
end
return seqs
"""
