"""The hand-encoded batched append call is byte for byte what hiredis would pack."""

from __future__ import annotations

import hiredis
import redis

from spool.appendscript import CONSTANTS_PER_CALL
from spool.appendwire import DELTA_ARGC, delta_prefix, encode_arguments, encode_delta, pack_call
from spool.ids import new_generation_id
from spool.keys import Keys
from spool.log import EventLog, Retention


def event_log() -> EventLog:
    # register_script does not talk to Redis: no server needed to build the arguments.
    return EventLog(redis.Redis(), Keys("wire"), Retention(100, 50, 150))


def test_a_plain_delta_encodes_as_its_compact_arguments() -> None:
    log, gen_id = event_log(), new_generation_id()
    for number, text in ((1, "abcd"), (27, 'qu"o\\te\n'), (1000, "ünïcødé ✓")):
        args = log.batch_arguments(gen_id, "delta", {"text": text}, None, ("w1d", number))
        assert len(args) == DELTA_ARGC
        expected = encode_arguments(args)
        assert encode_delta(delta_prefix(gen_id, "w1d"), number, text) == expected
        assert hiredis.pack_command(tuple(args)).endswith(expected)


def test_a_call_packs_as_hiredis_would() -> None:
    log, gen_id = event_log(), new_generation_id()
    delta = log.batch_arguments(gen_id, "delta", {"text": "hi"}, None, ("w", 1))
    done = log.batch_arguments(gen_id, "done", {"finish_reason": "stop"},
                               {"status": "completed", "usage": {"output_tokens": 1}}, ("w", 2))
    head = ("EVALSHA", "0" * 40, 0, *log.batch_constants)
    assert len(log.batch_constants) == CONSTANTS_PER_CALL
    events = [(DELTA_ARGC, encode_delta(delta_prefix(gen_id, "w"), 1, "hi")),
              (len(done), encode_arguments(done))]
    assert pack_call(head, events) == hiredis.pack_command((*head, *delta, *done))
