"""Taking job ids off the two RQ queues: many in one command.

RQ dequeues a job by moving its id from the queue into the queue's
intermediate list (LMOVE), where the orphan sweep finds it if the worker
dies before starting it. The worker keeps that step, but a pipeline of
LMOVEs has to guess how many to send: it sent one per free slot (up to 50)
on each queue, so a busy worker taking one or two jobs a tick paid for ~100
commands (98 of them answering nil) and their packing and replies. One
script does the same moves and stops at the first empty queue.
"""

from __future__ import annotations

from typing import Any

from rq import Queue

from worker.slot import text

POP_LUA = """
-- KEYS: 1 interactive queue, 2 its intermediate list, 3 batch queue, 4 its intermediate list
-- ARGV: 1 most ids in all, 2 most batch ids; interactive ones first
local most, found = tonumber(ARGV[1]), {}
for _ = 1, most do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not id then break end
  found[#found + 1] = id
end
local interactive = #found
for _ = 1, math.min(most - interactive, tonumber(ARGV[2])) do
  local id = redis.call('LMOVE', KEYS[3], KEYS[4], 'LEFT', 'RIGHT')
  if not id then break end
  found[#found + 1] = id
end
return {interactive, found}
"""


class Dequeuer:
    """Moves up to N job ids from the queues into their intermediate lists, in one call."""

    def __init__(self, client: Any, interactive: Queue, batch: Queue) -> None:
        self.interactive = interactive
        self.batch = batch
        self._script = client.register_script(POP_LUA)
        self._keys = [interactive.key, interactive.intermediate_queue_key,
                      batch.key, batch.intermediate_queue_key]

    def pop(self, most: int, most_batch: int) -> list[tuple[str, Queue]]:
        """Up to `most` ids, interactive first, of which at most `most_batch` batch ones."""
        if most <= 0:
            return []
        interactive, ids = self._script(keys=self._keys, args=[most, max(0, most_batch)])
        return [(text(job_id), self.interactive if i < int(interactive) else self.batch)
                for i, job_id in enumerate(ids)]
