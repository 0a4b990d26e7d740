"""Starting a generation: read its record and append `in_progress`, in one script.

The worker's claim (`worker/claim.py`) calls this for every job of a tick in
its one pipeline, instead of loading each record and then queueing the
`in_progress` event with the writer: one round trip less per tick, one
event less for the writer, and the generation's first delta is no longer
the second event of a writer tick (which waited a tick).

The append itself is the event log's own function (`spool/appendscript.py`),
so the rules are the same: refused after a terminal event, TTLs, publish.
Nothing is appended when the record is missing, ended, or has a cancel
request (the runner then ends it `cancelled` itself).
"""

from __future__ import annotations

from typing import Any

from spool.appendscript import _APPEND_FUNCTION
from spool.events import STATUS
from spool.log import EventLog

# KEYS: the append's six keys of one generation.
# ARGV: 1 started ms, 2 worker id, 3..12 the append's ten fixed arguments for
# the `in_progress` status event. Returns {record as HGETALL, seq} (seq 0:
# nothing appended).
START_LUA = _APPEND_FUNCTION + """
local rec = redis.call('HGETALL', KEYS[1])
if #rec == 0 then return {rec, 0} end
local created, stop = nil, false
for i = 1, #rec, 2 do
  local name = rec[i]
  if name == 'created_ms' then created = tonumber(rec[i + 1])
  elseif name == 'ended' or name == 'cancel' then stop = true end
end
if stop then return {rec, 0} end
local started = tonumber(ARGV[1])
local metrics = '{"queue_ms":' .. (started - (created or started)) ..
                ',"ttft_ms":null,"duration_ms":0,"tokens_per_second":null}'
local A = {unpack(ARGV, 3, 12)}
for _, v in ipairs({'status', 'in_progress', 'started_ms', ARGV[1], 'worker', ARGV[2],
                    'metrics', metrics}) do
  A[#A + 1] = v
end
local seq, entry = append(KEYS, A)
if entry then redis.call(A[8], KEYS[6], entry) end
return {rec, seq}
"""


def start_command(log: EventLog, sha: str, gen_id: str, started_ms: int,
                  worker_id: str) -> tuple[Any, ...]:
    """The EVALSHA command starting `gen_id` (for a pipeline's execute_command)."""
    keys, args = log.arguments(gen_id, STATUS, {"status": "in_progress"})
    return ("EVALSHA", sha, len(keys), *keys, started_ms, worker_id, *args[:10])
